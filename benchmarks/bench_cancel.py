"""Mass cancellation: 300 running ``sleep`` children cancelled at once.

corral: ``corral.task("bench", max_subprocesses=300)`` running 300
``subprocess()`` calls, then ``task.cancel()``; the figure is the time from
the cancel to the task scope having exited (every child terminated and
reaped). Goal: <= 1 s, and no child left. Baseline in the same run: 300 raw
``trio.run_process`` (trio) / ``anyio.run_process`` (asyncio) in a nursery /
task group, cancelled at once.

Nothing is cancelled before all 300 children run: each one is ``sh -c
'printf x >> FIFO; exec sleep 30.<pid>'``, and the benchmark reads the FIFO
(opened ``O_RDWR | O_NONBLOCK``, so writers never block) until 300 bytes came.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile

import anyio
import trio

import corral
from _common import (
    BACKENDS,
    count_procs,
    emit,
    kill_procs,
    log,
    marker,
    median,
    now,
    raise_nofile,
    side_by_side,
    zombie_children,
)
from corral.util import subprocess

N = 300
ROUNDS = 3
GOAL_SECONDS = 1.0
#: Give up on a round whose children do not all start (or stop) within this.
CAP = 30.0

SLEEP = marker(30)

Sample = tuple[float, float, float]
"""(seconds from cancel to scope exit, sleepers left, unreaped children) right after."""


class _Fifo:
    """A FIFO that the children each write one byte to once they run."""

    def __init__(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="corral-bench-")
        self.path = os.path.join(self._dir, "started")
        os.mkfifo(self.path)
        self.argv = ["sh", "-c", f"printf x >> '{self.path}'; exec sleep {SLEEP}"]

    async def wait_for(self, count: int) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK)
        try:
            got = 0
            while got < count:
                await anyio.wait_readable(fd)
                with contextlib.suppress(BlockingIOError):
                    got += len(os.read(fd, 4096))
        finally:
            anyio.notify_closing(fd)
            os.close(fd)

    def remove(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)


async def corral_cancel(fifo: _Fifo) -> Sample:
    with anyio.fail_after(CAP):
        async with corral.task("bench", max_subprocesses=N) as task:
            for _ in range(N):
                task.start_soon(subprocess, fifo.argv)
            await fifo.wait_for(N)
            started = now()
            task.cancel()
        elapsed = now() - started
    return elapsed, float(count_procs(SLEEP)), float(zombie_children())


async def trio_cancel(fifo: _Fifo) -> Sample:
    async def one() -> None:
        await trio.run_process(fifo.argv, capture_stdout=True, capture_stderr=True)

    with trio.fail_after(CAP):
        async with trio.open_nursery() as nursery:
            for _ in range(N):
                nursery.start_soon(one)
            await fifo.wait_for(N)
            started = now()
            nursery.cancel_scope.cancel()
        elapsed = now() - started
    return elapsed, float(count_procs(SLEEP)), float(zombie_children())


async def anyio_cancel(fifo: _Fifo) -> Sample:
    async def one() -> None:
        await anyio.run_process(fifo.argv)

    with anyio.fail_after(CAP):
        async with anyio.create_task_group() as tg:
            for _ in range(N):
                tg.start_soon(one)
            await fifo.wait_for(N)
            started = now()
            tg.cancel_scope.cancel()
        elapsed = now() - started
    return elapsed, float(count_procs(SLEEP)), float(zombie_children())


def main() -> None:
    raise_nofile()
    fifo = _Fifo()
    try:
        for backend in BACKENDS:

            def run_corral(backend: str = backend) -> Sample:
                try:
                    return anyio.run(corral_cancel, fifo, backend=backend)
                finally:
                    kill_procs(SLEEP)

            def run_baseline(backend: str = backend) -> Sample:
                try:
                    if backend == "trio":
                        return trio.run(trio_cancel, fifo)
                    return anyio.run(anyio_cancel, fifo, backend=backend)
                finally:
                    kill_procs(SLEEP)

            log(f"cancel {N} sleepers, {backend}")
            ours, theirs = side_by_side(
                ROUNDS, run_corral, run_baseline, label=backend, warmup=False
            )
            seconds = median([s[0] for s in ours])
            left = int(sum(s[1] for s in ours))
            unreaped = int(sum(s[2] for s in ours))
            emit(
                benchmark="cancel",
                figure=f"cancel {N} running sleep children at once: cancel -> task scope exited",
                backend=backend,
                corral=seconds,
                baseline=median([s[0] for s in theirs]),
                unit="s",
                goal=f"corral <= {GOAL_SECONDS:g} s, 0 left, all reaped",
                met=seconds <= GOAL_SECONDS and left == 0 and unreaped == 0,
                corral_samples=[s[0] for s in ours],
                baseline_samples=[s[0] for s in theirs],
                corral_left=left,
                baseline_left=int(sum(s[1] for s in theirs)),
                corral_unreaped=unreaped,
                baseline_unreaped=int(sum(s[2] for s in theirs)),
                baseline_is=(
                    f"{N} raw trio.run_process in a nursery, cancelled"
                    if backend == "trio"
                    else f"{N} raw anyio.run_process in a task group, cancelled"
                ),
            )
    finally:
        fifo.remove()


if __name__ == "__main__":
    main()
