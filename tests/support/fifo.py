"""A FIFO that children write one byte to when they are ready: readiness without sleeping."""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["Fifo", "cancel_once_ready"]


class Fifo:
    """A FIFO that children write one byte to when they are ready.

    The test side is opened read-write and non-blocking, so opening never
    blocks and reads never see EOF; :meth:`wait` awaits readiness instead of
    sleeping. With *shared*, other users (the SSH test users) may write to it.
    """

    def __init__(self, path: Path, *, shared: bool = False) -> None:
        self.path = path
        os.mkfifo(path)
        if shared:
            os.chmod(path, 0o666)
        self.fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)

    def shell_ready(self) -> str:
        """A shell snippet that signals readiness."""
        return f"printf x > '{self.path}'"

    async def wait(self, count: int = 1) -> None:
        """Wait until *count* children have signalled."""
        got = 0
        while got < count:
            try:
                got += len(os.read(self.fd, count - got))
            except BlockingIOError:
                await anyio.wait_readable(self.fd)

    def wait_blocking(self, count: int, timeout: float) -> int:
        """Block up to *timeout* seconds in all until *count* children have signalled.

        Returns how many had (fewer than *count* only when the time ran out), for
        tests that drive a harness process from outside any event loop.
        """
        import select
        import time

        deadline = time.monotonic() + timeout
        got = 0
        while got < count:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                break
            with contextlib.suppress(BlockingIOError):
                got += len(os.read(self.fd, count - got))
        return got

    def pending(self) -> int:
        """Signals that arrived and were not waited for yet (consumes them)."""
        try:
            return len(os.read(self.fd, 1 << 16))
        except BlockingIOError:
            return 0

    def release(self, count: int = 1) -> None:
        """Write *count* lines, for children that ``read`` from the FIFO to go on."""
        os.write(self.fd, b"\n" * count)

    def close(self) -> None:
        """Close the test's end (the FIFO itself stays until its directory goes)."""
        os.close(self.fd)


async def cancel_once_ready(command: list[str], fifo: Fifo) -> None:
    """Run *command* with ``subprocess()`` and cancel it once it signals *fifo*.

    A timeout would race a child that is slow to start: on a loaded machine,
    Python can take longer than a short timeout to install a signal handler.
    """
    from corral.util import subprocess

    async with anyio.create_task_group() as tg:
        tg.start_soon(subprocess, command)
        await fifo.wait()
        tg.cancel_scope.cancel()
