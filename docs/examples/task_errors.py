"""A task's sandbox that cannot be set up fails the task once, on entry, before any sample."""

import socket

import anyio

import corral
from corral.sandboxes import HostRefusedError
from corral.util import SandboxUnavailableError, sandbox


def closed_port() -> int:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def run(task: corral.Task, n: int) -> None:
    async with task.sample(n):
        await sandbox().exec(["echo", str(n)])


async def main() -> None:
    config = {"hosts": [f"127.0.0.1:{closed_port()}"], "connect_timeout": 2}
    try:
        async with corral.task("eval", sandbox=("ssh", config)) as task:
            for n in range(100):
                task.start_soon(run, task, n)  # never reached: entering the task failed
    except* HostRefusedError as group:  # the host key or our key: fix the configuration
        print("refused:", group.exceptions[0])
    except* SandboxUnavailableError as group:  # no host up: retry later, or elsewhere
        print("unreachable:", group.exceptions[0])


anyio.run(main, backend="trio")
