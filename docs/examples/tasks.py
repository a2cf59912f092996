"""Task scopes: start work, hand back a ready value, cancel, and see errors."""

import anyio
from anyio.abc import TaskStatus

import corral
from corral.util import subprocess


async def server(*, task_status: TaskStatus[int]) -> None:
    port = 8080  # pretend we bound a socket here
    print("serving inside", corral.current_task())  # <corral Task 'serve' running>
    task_status.started(port)
    await anyio.sleep_forever()


async def fails() -> None:
    await anyio.sleep(0.05)
    raise ValueError("sample 7 is broken")


async def main() -> None:
    # start() waits until the callee reports ready; cancel() stops everything inside.
    async with corral.task("serve", max_subprocesses=2) as task:
        port = await task.start(server)
        task.start_soon(subprocess, ["sleep", "30"])
        await anyio.sleep(0.1)
        print(f"ready on {port};", task.statistics())  # subprocesses_running=1
        task.cancel("done")
    print("after cancel:", task.statistics().state)  # the sleep was terminated and reaped

    # An error cancels the siblings and leaves the block inside an ExceptionGroup.
    try:
        async with corral.task("grading") as task:
            task.start_soon(fails)
            task.start_soon(subprocess, ["sleep", "30"])
    except* ValueError as group:
        print("failed:", group.exceptions[0])


anyio.run(main, backend="trio")
