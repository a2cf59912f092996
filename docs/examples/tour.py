"""The README's tour: a task scope, limited subprocesses, a timeout and a cancellation."""

import sys

import anyio

import corral
from corral.util import concurrency, subprocess


async def grade(sample: int) -> None:
    async with concurrency("grader", 2):  # at most two samples graded at once
        result = await subprocess(
            [sys.executable, "-c", f"print({sample} ** 2)"], timeout=10, output_limit=1 << 20
        )
    print(f"sample {sample}: {result.stdout.strip()} (exit {result.returncode})")


async def main() -> None:
    async with corral.task("tour", max_subprocesses=4, kill_grace=1.0) as task:
        for sample in range(4):
            task.start_soon(grade, sample)
        try:
            await subprocess("sleep 30", timeout=0.5)  # SIGTERM to its whole process group
        except TimeoutError as exc:
            print(exc)  # Command 'sleep 30' timed out after 0.5 seconds
        with anyio.move_on_after(0.5):  # cancelled: terminated, reaped, then re-raised
            await subprocess(["sleep", "30"])


anyio.run(main, backend="trio")  # or backend="asyncio"
