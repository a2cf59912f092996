"""Resizing a named limit live: raising it admits waiters at once, lowering lets holders drain."""

import anyio

from corral.util import concurrency, concurrency_status


async def worker(done: list[int], n: int) -> None:
    async with concurrency("model-api", 2):
        await anyio.sleep(1)
        done.append(n)


async def main() -> None:
    done: list[int] = []
    async with anyio.create_task_group() as tg, concurrency("model-api", 2) as limit:
        assert (limit.name, limit.concurrency, limit.value, limit.in_use) == ("model-api", 2, 1, 1)
        for n in range(4):
            tg.start_soon(worker, done, n)
        await anyio.wait_all_tasks_blocked()
        print(concurrency_status())  # {'model-api': (2, 2)}: three workers wait

        limit.concurrency = 4  # the three waiters get a slot at once
        await anyio.wait_all_tasks_blocked()
        print(concurrency_status())  # {'model-api': (4, 4)}

        limit.concurrency = 1  # nobody is pre-empted: in_use drains to the new limit
        print(concurrency_status(), limit.value)  # {'model-api': (4, 1)} 0

    # The object describes the limit, not a slot: it stays valid after the block.
    print(concurrency_status(), sorted(done))  # {'model-api': (0, 1)} [0, 1, 2, 3]


anyio.run(main, backend="trio")
