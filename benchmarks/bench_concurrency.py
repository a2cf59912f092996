"""``concurrency()`` enter/exit cost on an uncontended limit.

corral: ``async with corral.util.concurrency("bench", 10): pass`` in a tight
loop. Baseline in the same run: ``async with limiter: pass`` on one
``trio.CapacityLimiter(10)`` (trio) or ``anyio.CapacityLimiter(10)``
(asyncio) made before the loop. Figure: microseconds per enter+exit; goal:
corral / baseline <= 1.3 (under asyncio the goal is informational).

``--profile`` prints a cProfile of the corral loop under each backend to
stderr instead of measuring.
"""

from __future__ import annotations

import cProfile
import functools
import pstats
import sys

import anyio
import trio

from _common import BACKENDS, emit, log, median, now, paired_ratio, side_by_side
from corral.util import concurrency

#: Short rounds, many of them: each corral round runs right next to its
#: baseline round, and the median of many pairs rides out the machine's noise.
N = 20_000
ROUNDS = 15
GOAL = 1.3


async def corral_loop() -> float:
    started = now()
    for _ in range(N):
        async with concurrency("bench", 10):
            pass
    return (now() - started) / N * 1e6


async def trio_loop() -> float:
    limiter = trio.CapacityLimiter(10)
    started = now()
    for _ in range(N):
        async with limiter:
            pass
    return (now() - started) / N * 1e6


async def anyio_loop() -> float:
    limiter = anyio.CapacityLimiter(10)
    started = now()
    for _ in range(N):
        async with limiter:
            pass
    return (now() - started) / N * 1e6


def run_corral(backend: str) -> float:
    if backend == "trio":
        return trio.run(corral_loop)
    return anyio.run(corral_loop, backend=backend)


def run_baseline(backend: str) -> float:
    if backend == "trio":
        return trio.run(trio_loop)
    return anyio.run(anyio_loop, backend=backend)


def profile() -> None:
    for backend in BACKENDS:
        profiler = cProfile.Profile()
        profiler.enable()
        run_corral(backend)
        profiler.disable()
        print(f"--- corral concurrency() loop under {backend}, {N} iterations", file=sys.stderr)
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(15)


def main() -> None:
    for backend in BACKENDS:
        log(f"concurrency() enter/exit, {backend}")
        ours, theirs = side_by_side(
            ROUNDS,
            functools.partial(run_corral, backend),
            functools.partial(run_baseline, backend),
            label=backend,
        )
        cost, base_cost = median(ours), median(theirs)
        ratio = cost / base_cost
        emit(
            benchmark="concurrency",
            figure="concurrency() enter+exit, uncontended, limit 10",
            backend=backend,
            corral=cost,
            baseline=base_cost,
            unit="us/iteration",
            goal=f"ratio <= {GOAL:g}" + (" (informational)" if backend != "trio" else ""),
            met=ratio <= GOAL,
            corral_samples=ours,
            baseline_samples=theirs,
            paired_ratio=round(paired_ratio(ours, theirs), 3),
            iterations=N,
            baseline_is=(
                "async with trio.CapacityLimiter(10)"
                if backend == "trio"
                else "async with anyio.CapacityLimiter(10)"
            ),
        )


if __name__ == "__main__":
    if sys.argv[1:] == ["--profile"]:
        profile()
    else:
        main()
