"""Spawn throughput: 400 x ``true``, 16 at once, output captured.

corral: ``corral.task("bench", max_subprocesses=16)`` starting
``corral.util.subprocess(["true"])`` 400 times. Baseline under trio: raw
``trio.run_process(["true"], capture_stdout=True, capture_stderr=True)``
behind a ``trio.CapacityLimiter(16)``; under asyncio: raw
``anyio.run_process(["true"])`` (which captures both streams) behind an
``anyio.CapacityLimiter(16)``. Figure: processes per second; goal: corral
reaches >= 0.9 of the baseline on each backend.

Besides the rate, each line reports the CPU time this process spent per
spawned child (all its threads: trio and asyncio's ``Popen`` runs in worker
threads), a figure less at the mercy of the machine's other load.
"""

from __future__ import annotations

import time

import anyio
import trio

import corral
from _common import BACKENDS, emit, log, median, now, paired_ratio, side_by_side
from corral.util import subprocess

N = 400
AT_ONCE = 16
ROUNDS = 7
GOAL = 0.9

Sample = tuple[float, float]
"""(processes per second, CPU milliseconds of this process per child)."""


class _Clock:
    def __init__(self) -> None:
        self.wall = now()
        self.cpu = time.process_time()

    def sample(self) -> Sample:
        return N / (now() - self.wall), (time.process_time() - self.cpu) / N * 1e3


async def corral_spawn() -> Sample:
    async def one() -> None:
        result = await subprocess(["true"])
        assert result.success

    clock = _Clock()
    async with corral.task("bench", max_subprocesses=AT_ONCE) as task:
        for _ in range(N):
            task.start_soon(one)
    return clock.sample()


async def trio_spawn() -> Sample:
    limiter = trio.CapacityLimiter(AT_ONCE)

    async def one() -> None:
        async with limiter:
            await trio.run_process(["true"], capture_stdout=True, capture_stderr=True)

    clock = _Clock()
    async with trio.open_nursery() as nursery:
        for _ in range(N):
            nursery.start_soon(one)
    return clock.sample()


async def anyio_spawn() -> Sample:
    limiter = anyio.CapacityLimiter(AT_ONCE)

    async def one() -> None:
        async with limiter:
            await anyio.run_process(["true"])

    clock = _Clock()
    async with anyio.create_task_group() as tg:
        for _ in range(N):
            tg.start_soon(one)
    return clock.sample()


def main() -> None:
    for backend in BACKENDS:

        def run_corral(backend: str = backend) -> Sample:
            return anyio.run(corral_spawn, backend=backend)

        def run_baseline(backend: str = backend) -> Sample:
            if backend == "trio":
                return trio.run(trio_spawn)
            return anyio.run(anyio_spawn, backend=backend)

        log(f"spawn throughput, {backend}")
        ours, theirs = side_by_side(ROUNDS, run_corral, run_baseline, label=backend)
        rates = [s[0] for s in ours]
        base_rates = [s[0] for s in theirs]
        corral_rate, baseline_rate = median(rates), median(base_rates)
        emit(
            benchmark="subprocess",
            figure=f"spawn throughput: {N} x true, {AT_ONCE} at once, output captured",
            backend=backend,
            corral=corral_rate,
            baseline=baseline_rate,
            unit="processes/s",
            goal=f"ratio >= {GOAL}",
            met=corral_rate / baseline_rate >= GOAL,
            corral_samples=rates,
            baseline_samples=base_rates,
            paired_ratio=round(paired_ratio(rates, base_rates), 3),
            corral_cpu_ms_per_process=round(median([s[1] for s in ours]), 3),
            baseline_cpu_ms_per_process=round(median([s[1] for s in theirs]), 3),
            baseline_is="raw trio.run_process + trio.CapacityLimiter"
            if backend == "trio"
            else "raw anyio.run_process + anyio.CapacityLimiter",
        )


if __name__ == "__main__":
    main()
