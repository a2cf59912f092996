"""What corral does to a child when its caller gives up on it."""

import contextlib
import sys
import time
import warnings

import anyio

import corral
from corral.util import subprocess

IGNORES_SIGTERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(30)"
)


async def main() -> None:
    async with corral.task("cancel-demo", kill_grace=0.5):
        # A child that dies on SIGTERM is gone at once: no grace is spent.
        started = time.monotonic()
        with anyio.move_on_after(0.2):
            await subprocess("sleep 30 & sleep 30; wait")  # the background sleep dies too
        print(f"sleepers stopped after {time.monotonic() - started:.2f} s")

        # A child that ignores SIGTERM gets SIGKILL after the task's kill grace.
        started = time.monotonic()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with contextlib.suppress(TimeoutError):
                await subprocess([sys.executable, "-c", IGNORES_SIGTERM], timeout=0.5)
        print(f"stubborn child killed after {time.monotonic() - started:.2f} s")
        message = str(caught[0].message)
        print(caught[0].category.__name__, message[message.index("(process group") :])


anyio.run(main, backend="trio")
