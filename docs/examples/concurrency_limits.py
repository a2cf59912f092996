"""Named concurrency limits: shared by key, one slot per holder, owned by the event loop."""

import logging

import anyio

from corral.util import concurrency, concurrency_status

logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")


async def call_model(peak: list[int]) -> None:
    async with concurrency("model-api", 3):
        in_use, _limit = concurrency_status()["model-api"]
        peak[0] = max(peak[0], in_use)
        await anyio.sleep(0.05)


async def main() -> None:
    peak = [0]
    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(call_model, peak)
    print("most slots held at once:", peak[0])  # 3

    # The key defaults to the name. Asking for a known key with another limit gets the
    # existing limiter (first limit and name win) and logs a warning once.
    async with concurrency("model-api, retries", 5, key="model-api"):
        print(concurrency_status())  # {'model-api': (1, 3)}

    # Nested use of one key takes one slot each; both are given back on error.
    try:
        async with concurrency("model-api", 3), concurrency("model-api", 3):
            print(concurrency_status())  # {'model-api': (2, 3)}
            raise RuntimeError("boom")
    except RuntimeError:
        print(concurrency_status())  # {'model-api': (0, 3)}

    # Cancelled while waiting: no slot is taken.
    async with concurrency("single", 1):
        with anyio.move_on_after(0.05):
            async with concurrency("single", 1):
                raise AssertionError("not reached")
        print(concurrency_status()["single"])  # (1, 1): only the outer slot is held


async def fresh_loop() -> None:
    print("a new event loop starts empty:", concurrency_status())  # {}


anyio.run(main, backend="trio")
anyio.run(fresh_loop, backend="asyncio")
