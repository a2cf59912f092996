"""Scoped limits, a sample's limits, collect() and background()."""

import anyio

import corral
from corral.util import (
    LimitExceededError,
    apply_limits,
    background,
    collect,
    concurrency,
    sample_limits,
    time_limit,
    working_limit,
)


async def slow(seconds: float) -> float:
    await anyio.sleep(seconds)
    return seconds


async def hold_the_slot(*, task_status: anyio.abc.TaskStatus[None]) -> None:
    async with concurrency("api", 1):
        task_status.started()
        await anyio.sleep(0.3)


async def main() -> None:
    # A limit cancels its block and raises where the block exits.
    try:
        with time_limit(0.1):
            await slow(10)
    except LimitExceededError as exc:
        print(exc.type, exc.limit)  # time 0.1

    # apply_limits(catch_errors=True) records its own limit's error instead of raising it.
    with apply_limits([time_limit(0.1)], catch_errors=True) as scope:
        await slow(10)
    print(scope.limit_error is not None)  # True

    async with corral.task("limits") as task:
        await task.start(hold_the_slot)  # another task holds the only "api" slot for 0.3 s
        async with task.sample(1, time_limit=5, working_limit=1):
            # Waiting for the slot is not working time; sleeping inside it is.
            with working_limit(0.2) as limit:
                async with concurrency("api", 1):
                    await slow(0.1)
            print(round(limit.usage, 1), round(sample_limits().time.usage, 1))  # 0.1 0.4

            # Results in order; the first error would cancel the rest.
            print(await collect(slow(0.02), slow(0.01)))  # [0.02, 0.01]

            # Runs until the sample's body ends, then is cancelled.
            background(slow, 60)

        try:
            async with task.sample(2, working_limit=0.1):
                await slow(10)
        except TimeoutError as exc:  # a sample's own limit is a TimeoutError ...
            print(isinstance(exc, LimitExceededError), exc)  # ... and a LimitExceededError
            # True sample 2 exceeded its working limit of 0.1 seconds


for backend in ("trio", "asyncio"):
    anyio.run(main, backend=backend)
