"""Spawn throughput: 400 x ``true``, 16 at once, output captured.

corral: ``corral.task("bench", max_subprocesses=16)`` starting
``corral.util.subprocess(["true"])`` 400 times. Baseline under trio: raw
``trio.run_process(["true"], capture_stdout=True, capture_stderr=True)``
behind a ``trio.CapacityLimiter(16)``; under asyncio: raw
``anyio.run_process(["true"])`` (which captures both streams) behind an
``anyio.CapacityLimiter(16)``. Figure: processes per second; goal: corral
reaches >= 0.9 of the baseline on each backend.
"""

from __future__ import annotations

import anyio
import trio
from _common import BACKENDS, emit, log, median, now, side_by_side

import corral
from corral.util import subprocess

N = 400
AT_ONCE = 16
ROUNDS = 5
GOAL = 0.9


async def corral_spawn() -> float:
    async def one() -> None:
        result = await subprocess(["true"])
        assert result.success

    started = now()
    async with corral.task("bench", max_subprocesses=AT_ONCE) as task:
        for _ in range(N):
            task.start_soon(one)
    return N / (now() - started)


async def trio_spawn() -> float:
    limiter = trio.CapacityLimiter(AT_ONCE)

    async def one() -> None:
        async with limiter:
            await trio.run_process(["true"], capture_stdout=True, capture_stderr=True)

    started = now()
    async with trio.open_nursery() as nursery:
        for _ in range(N):
            nursery.start_soon(one)
    return N / (now() - started)


async def anyio_spawn() -> float:
    limiter = anyio.CapacityLimiter(AT_ONCE)

    async def one() -> None:
        async with limiter:
            await anyio.run_process(["true"])

    started = now()
    async with anyio.create_task_group() as tg:
        for _ in range(N):
            tg.start_soon(one)
    return N / (now() - started)


def main() -> None:
    for backend in BACKENDS:

        def run_corral(backend: str = backend) -> float:
            return anyio.run(corral_spawn, backend=backend)

        def run_baseline(backend: str = backend) -> float:
            if backend == "trio":
                return trio.run(trio_spawn)
            return anyio.run(anyio_spawn, backend=backend)

        log(f"spawn throughput, {backend}")
        ours, theirs = side_by_side(ROUNDS, run_corral, run_baseline, label=backend)
        corral_rate, baseline_rate = median(ours), median(theirs)
        emit(
            benchmark="subprocess",
            figure=f"spawn throughput: {N} x true, {AT_ONCE} at once, output captured",
            backend=backend,
            corral=corral_rate,
            baseline=baseline_rate,
            unit="processes/s",
            goal=f"ratio >= {GOAL}",
            met=corral_rate / baseline_rate >= GOAL,
            corral_samples=ours,
            baseline_samples=theirs,
            baseline_is="raw trio.run_process + trio.CapacityLimiter"
            if backend == "trio"
            else "raw anyio.run_process + anyio.CapacityLimiter",
        )


if __name__ == "__main__":
    main()
