"""Non-blocking pipe ends for supervised subprocesses.

The supervisor makes its own pipes (rather than letting ``Popen`` make them)
so that it controls them fully under both backends: the parent's ends are
non-blocking and waited on with :func:`anyio.wait_readable` /
:func:`anyio.wait_writable`, a busy pipe is grown to 1 MiB so the child can
run ahead of the reader, and the supervisor can close its ends at any time, which is how the
draining of output after a kill is kept bounded.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from typing import TYPE_CHECKING

import anyio
from anyio.lowlevel import checkpoint

if TYPE_CHECKING:
    from .._core._tail import TailBuffer


__all__ = ["OutputCapture", "close_fd", "feed_input", "grow_pipe", "make_pipe"]

_READ_SIZE = 64 * 1024
_BIG_PIPE = 1024 * 1024
_READS_PER_CHECKPOINT = 16
_F_SETPIPE_SZ: int | None = getattr(fcntl, "F_SETPIPE_SZ", None)


def make_pipe() -> tuple[int, int]:
    """Return ``(read_fd, write_fd)``, both close-on-exec."""
    return os.pipe()


def close_fd(fd: int) -> None:
    """Close *fd*.

    Callers close an end only once no task waits on it (the supervisor's
    task group has exited, or the feeding task is the one closing), so the
    event loop need not be told: both backends cope with a closed fd that is
    no longer waited on.
    """
    with contextlib.suppress(OSError):
        os.close(fd)


class OutputCapture:
    """Reads one pipe to EOF into a :class:`~corral._core._tail.TailBuffer`.

    The buffer keeps all of it or exactly its last *limit* bytes, so memory
    stays within ``limit`` plus one read, however much the child writes. The
    buffer is the caller's: what was read stays there when the reading is
    cancelled.
    """

    __slots__ = ("_buffer", "_fd")

    def __init__(self, fd: int, buffer: TailBuffer) -> None:
        self._fd = fd
        self._buffer = buffer
        os.set_blocking(fd, False)

    async def run(self) -> None:
        """Read until EOF. Cancelling it leaves what was read so far in place.

        Every read that finds no data waits in the event loop; a stream of
        reads that never has to wait still checkpoints every
        :data:`_READS_PER_CHECKPOINT` reads, so a flood cannot starve other
        tasks or delay a cancellation.
        """
        fd = self._fd
        append = self._buffer.append
        grown = False
        unchecked = 0
        while True:
            try:
                chunk = os.read(fd, _READ_SIZE)
            except BlockingIOError:
                unchecked = 0
                await anyio.wait_readable(fd)
                continue
            if not chunk:
                return
            append(chunk)
            if not grown and len(chunk) == _READ_SIZE:
                # The child writes faster than we read: a bigger pipe lets it
                # run ahead, so more reads find data without a trip through
                # the event loop. Reads stay at 64 KiB, which os.read()
                # allocates cheaply.
                grown = True
                grow_pipe(fd)
            unchecked += 1
            if unchecked >= _READS_PER_CHECKPOINT:
                unchecked = 0
                await checkpoint()


def grow_pipe(fd: int) -> None:
    """Grow the pipe *fd* to 1 MiB if the user's pipe quota allows (else leave it)."""
    if _F_SETPIPE_SZ is None:
        return
    # EPERM once the user's pipe-buffer quota is spent: keep the pipe as it is.
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, _F_SETPIPE_SZ, _BIG_PIPE)


async def feed_input(fd: int, data: bytes) -> None:
    """Write *data* to the non-blocking pipe end *fd*; the caller closes it.

    A child that exits or closes its stdin early is not an error: the rest of
    the input is dropped, as with :func:`subprocess.run`.
    """
    view = memoryview(data)
    os.set_blocking(fd, False)
    try:
        while view:
            try:
                written = os.write(fd, view)
            except BlockingIOError:
                await anyio.wait_writable(fd)
                continue
            view = view[written:]
            await checkpoint()
    except (BrokenPipeError, ConnectionResetError):
        pass
