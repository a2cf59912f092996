"""A supervised child whose output is read as it arrives: :class:`StreamingProcess`.

:func:`open_process` is the public way in (``corral.open_process``): a
context manager that takes a ``"subprocesses"`` slot as ``subprocess()``
does and kills the process when its block ends. :func:`open_streaming`
starts a checked :class:`~._subprocess.Command` as
:func:`~._subprocess.run_supervised` does (its own session and process
group, watched by the guardian) and returns a :class:`StreamingProcess`:
its output chunk by chunk as the child writes it, its stdin, and its end.

There is no background task, so a handle needs no task group and cannot
outlive one; its owner stops it (:meth:`StreamingProcess.kill`) when its
scope ends. The pipes are read by whoever waits on the process:

* :meth:`~StreamingProcess.next_chunk` reads whichever of stdout and stderr
  has data, and meanwhile writes the input given at the start;
* :meth:`~StreamingProcess.write_stdin`, while the stdin pipe is full and no
  task is in ``next_chunk``, reads output into the handle's buffer, so a
  caller may write a command's whole input before reading its output, as
  long as that output fits the buffer.

**Buffering is bounded.** The handle holds at most :data:`BUFFER_LIMIT`
bytes of output that nobody took yet (plus one read of :data:`READ_SIZE`,
and up to 3 bytes of a UTF-8 character per stream). At the bound it stops
reading: the pipes fill and the child blocks in ``write``. A consumer that
stops reading thus slows the command down (backpressure) instead of growing
the harness's memory; a writer that nobody reads for blocks in
``write_stdin`` once the buffer and the pipes are full.

Waiting on several pipes at once is written here by hand (a small task
group racing ``wait_readable``/``wait_writable``): anyio has no select over
file descriptors, and asyncio's stream classes would read ahead without
bound.
"""

from __future__ import annotations

import codecs
import collections
import contextlib
import dataclasses
import logging
import os
from typing import TYPE_CHECKING, Literal

import anyio
import anyio.lowlevel

from .._core._checks import check_bool
from .._core._public import NoPublicConstructor
from .._core._settings import current_kill_grace, subprocess_limiter
from .._core._working import waiting
from ..tracing._actions import trace_action
from ._guardian import forget_group, watch_group
from ._pipes import grow_pipe
from ._process_group import group_alive, terminate_group
from ._subprocess import _Fds, _spawn, check_command

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
    from pathlib import Path

    from ._child import Child
    from ._subprocess import Command

__all__ = [
    "BUFFER_LIMIT",
    "READ_SIZE",
    "Chunk",
    "StreamingProcess",
    "open_process",
    "open_streaming",
    "start_streaming",
]

#: The most bytes of one stream read at a time.
READ_SIZE = 64 * 1024
#: The most bytes of output a handle holds that nobody has taken yet.
BUFFER_LIMIT = 1024 * 1024

Stream = Literal["stdout", "stderr"]
#: One piece of output: the stream it came from and its text.
Chunk = tuple[Stream, str]

logger = logging.getLogger("corral.subprocess")


class StreamingProcess(metaclass=NoPublicConstructor):
    """A running supervised child: its output as it comes, its stdin, its end.

    Get one from :func:`~corral.open_process`. ``async for stream, text in
    process`` yields its output as ``("stdout" | "stderr", text)`` pairs
    until it exits; :attr:`returncode` is then set. One task at a time
    iterates; another may write to stdin meanwhile. Output is held only
    while nobody takes it, and at most :data:`BUFFER_LIMIT` bytes of it: a
    loop that stops taking output makes the command block on its pipes.
    """

    def __init__(
        self,
        command: Command,
        child: Child,
        fds: _Fds,
        stdin: int | None,
        out: int | None,
        err: int | None,
        grace: float,
        keep_stdin: bool,
        on_end: Callable[[], None] | None,
    ) -> None:
        self._command = command
        self._child = child
        self._fds = fds
        self._grace = grace
        self._on_end = on_end
        self._readers: dict[int, tuple[Stream, codecs.IncrementalDecoder]] = {}
        pipes: tuple[tuple[int | None, Stream], ...] = ((out, "stdout"), (err, "stderr"))
        for fd, name in pipes:
            if fd is not None:
                os.set_blocking(fd, False)
                decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
                self._readers[fd] = (name, decoder)
        self._buffer: collections.deque[tuple[Stream, str, int]] = collections.deque()
        self._buffered = 0
        self._stdin = stdin
        if stdin is not None:
            os.set_blocking(stdin, False)
        self._pending = memoryview(command.input or b"")
        self._keep_stdin = keep_stdin
        # Only the holder of a lock waits on those fds (asyncio allows one waiter per fd).
        self._write_lock = anyio.Lock()
        self._read_lock = anyio.Lock()
        self._returncode: int | None = None
        self._killed = False
        self._released = anyio.Event()
        # The child for every waiter: one task at a time waits on its pidfd.
        self._shared = _SharedChild(child)
        if not self._pending:
            self._input_written()

    def __repr__(self) -> str:
        if self._killed:
            state = "killed"
        elif self._returncode is None:
            state = "running"
        else:
            state = f"exit {self._returncode}"
        return f"<StreamingProcess {self._command.display!r} pid={self.pid} {state}>"

    @property
    def pid(self) -> int:
        """The child's pid (its process group id too)."""
        return self._child.pid

    @property
    def returncode(self) -> int | None:
        """The exit status once it ended (``-N`` for signal ``N``), else ``None``."""
        return self._returncode

    @property
    def ended(self) -> bool:
        """Whether it exited (and was reaped) or was killed."""
        return self._killed or self._returncode is not None

    @property
    def stdin_open(self) -> bool:
        """Whether :meth:`write_stdin` may still be called."""
        return self._keep_stdin and not self.ended

    # -- output ---------------------------------------------------------------------

    def __aiter__(self) -> StreamingProcess:
        return self

    async def __anext__(self) -> Chunk:
        """The next ``(stream, text)``; ``StopAsyncIteration`` once the process ended.

        **Cancellation:** as :meth:`next_chunk`: the process is killed first.
        """
        chunk = await self.next_chunk()
        if chunk is None or isinstance(chunk, int):
            raise StopAsyncIteration
        return chunk

    async def next_chunk(self) -> Chunk | int | None:
        """The next piece of output; then the exit status; then ``None``.

        Text is decoded incrementally as UTF-8 (undecodable bytes become
        U+FFFD; a character split across reads comes whole). Pieces of one
        stream that were waiting in the buffer come joined. The exit status
        comes once both pipes are at end of file and the child was reaped
        (anything left in its group is stopped first, as :meth:`kill`
        does). ``None`` once that was returned; after :meth:`kill`, what was
        in the buffer, then ``None``. A checkpoint.

        **Cancellation:** the whole group is stopped (as :meth:`kill`) before
        the cancellation propagates.
        """
        try:
            async with self._read_lock:
                return await self._next()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.kill()
            raise

    async def _next(self) -> Chunk | int | None:
        await anyio.lowlevel.checkpoint()
        while True:
            if self._buffer:
                return self._take()
            if self.ended:
                return None
            if not self._readers:
                return await self._finish()  # None: killed meanwhile
            free = self._write_lock.statistics().owner is None
            if self._pending and free:
                self._feed()  # synchronous: no other write can come between
            if self._read():
                continue
            if self._pending and free and self._stdin is not None:
                # Wait to write the rest of the input too; only one task may wait on stdin.
                self._write_lock.acquire_nowait()
                try:
                    await self._wait(list(self._readers), self._stdin)
                finally:
                    self._write_lock.release()
            else:
                await self._wait(list(self._readers), None)

    def _take(self) -> Chunk:
        name, text, size = self._buffer.popleft()
        parts = [text]
        while self._buffer and self._buffer[0][0] == name:
            _, more, more_size = self._buffer.popleft()
            parts.append(more)
            size += more_size
        self._buffered -= size
        return name, "".join(parts)

    def _read(self) -> bool:
        """Read what the pipes have, within the buffer's bound; whether anything came."""
        progress = False
        for fd, (name, decoder) in list(self._readers.items()):
            if self._buffered >= BUFFER_LIMIT:
                break
            try:
                data = os.read(fd, READ_SIZE)
            except BlockingIOError:
                continue
            progress = True
            if len(data) == READ_SIZE:
                grow_pipe(fd)  # the child writes faster than we read: let it run ahead
            text = decoder.decode(data, final=not data)
            if not data:
                del self._readers[fd]
                self._fds.close(fd)
            if text:
                self._buffer.append((name, text, len(data)))
                self._buffered += len(data)
        return progress

    async def _wait(self, readable: list[int], writable: int | None) -> None:
        """Wait until one of *readable* can be read or *writable* written, or one is closed.

        A pipe closed meanwhile (:meth:`kill` from another task) ends the
        wait; the caller looks at the state again.
        """
        waits: list[tuple[Callable[[int], Awaitable[None]], int]]
        waits = [(anyio.wait_readable, fd) for fd in readable]
        if writable is not None:
            waits.append((anyio.wait_writable, writable))
        if len(waits) == 1:
            wait, fd = waits[0]
            with contextlib.suppress(anyio.ClosedResourceError):
                await wait(fd)
            return
        async with anyio.create_task_group() as tg:

            async def first(wait: Callable[[int], Awaitable[None]], fd: int) -> None:
                with contextlib.suppress(anyio.ClosedResourceError):
                    await wait(fd)
                tg.cancel_scope.cancel()

            for wait, fd in waits:
                tg.start_soon(first, wait, fd)

    async def _finish(self) -> int | None:
        """Reap the child (the pipes are at EOF); its status, or ``None`` if it was killed."""
        if self.ended:
            return None
        returncode = await self._shared.wait()
        if group_alive(self.pid):  # as run_supervised: nothing it started outlives it
            with anyio.CancelScope(shield=True):
                await terminate_group(
                    self._shared, self._grace, f"command {self._command.display!r}"
                )
        if self._killed:
            return None
        self._returncode = returncode
        self._release()
        return returncode

    # -- stdin ----------------------------------------------------------------------

    def _input_written(self) -> None:
        if not self._keep_stdin:
            fd, self._stdin = self._stdin, None
            self._fds.close(fd)

    def _feed(self) -> None:
        """Write what of the start's input the pipe takes now (the write lock held)."""
        fd = self._stdin
        if fd is None:
            self._pending = memoryview(b"")
            return
        try:
            written = os.write(fd, self._pending)
        except BlockingIOError:
            return
        except (BrokenPipeError, ConnectionResetError):
            written = len(self._pending)  # the child will not read the rest
        self._pending = self._pending[written:]
        if not self._pending:
            self._input_written()

    async def write_stdin(self, data: bytes) -> None:
        """Write *data* to the child's stdin, after the input given at the start.

        While the pipe is full and no task is in :meth:`next_chunk`, output
        is read into the buffer (within :data:`BUFFER_LIMIT`), so a command
        that answers as it reads does not block this.

        Raises:
            RuntimeError: stdin was not kept open, :meth:`close_stdin` was
                called, the child closed its stdin, or the process ended.

        **Cancellation:** what was written stays written; the process runs on.
        """
        await anyio.lowlevel.checkpoint()
        self._check_writable()
        async with self._write_lock:
            self._check_writable()
            if self._pending:
                await self._write_all(self._pending, pending=True)
            await self._write_all(memoryview(data), pending=False)
            if not self._keep_stdin:  # close_stdin() came while we wrote
                self._close_stdin_now()

    async def _write_all(self, view: memoryview, *, pending: bool) -> None:
        while view:
            fd = self._stdin
            if fd is None or self.ended:
                raise RuntimeError("cannot write to stdin: the process has ended")
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:
                await self._wait_writable(fd)
                continue
            except (BrokenPipeError, ConnectionResetError):
                raise RuntimeError("cannot write to stdin: the process closed it") from None
            if pending:
                self._pending = view

    def _check_writable(self) -> None:
        if not self._keep_stdin:  # never opened, or closed by the caller: said first
            raise RuntimeError("cannot write to stdin: it is closed")
        if self.ended:
            raise RuntimeError("cannot write to stdin: the process has ended")
        if self._stdin is None:
            raise RuntimeError("cannot write to stdin: it is closed")

    async def _wait_writable(self, fd: int) -> None:
        """Wait until *fd* takes more; meanwhile read output if no one else does."""
        if self._read_lock.statistics().owner is not None or not self._readers:
            await self._wait([], fd)
            return
        async with self._read_lock:
            if self._buffered < BUFFER_LIMIT and self._read():
                await anyio.lowlevel.checkpoint()  # output taken: try the write again
                return
            readable = list(self._readers) if self._buffered < BUFFER_LIMIT else []
            await self._wait(readable, fd)

    async def close_stdin(self) -> None:
        """Close the child's stdin once what was given and written reached it.

        Returns at once; a write in progress, or the start's input not yet
        written, closes it when done. Idempotent. A checkpoint.
        """
        await anyio.lowlevel.checkpoint()
        self._keep_stdin = False
        if not self._pending and self._write_lock.statistics().owner is None:
            self._close_stdin_now()

    def _close_stdin_now(self) -> None:
        fd, self._stdin = self._stdin, None
        if fd is not None:
            anyio.notify_closing(fd)
            self._fds.close(fd)

    # -- the end --------------------------------------------------------------------

    async def kill(self) -> None:
        """Stop the whole group (TERM, the kill grace, KILL) and reap the child.

        Idempotent; a process that ended already is left alone. Once killed,
        the iteration gives what was in the buffer and no exit status. A
        checkpoint. **Cancellation:** shielded: the group is stopped before it
        returns.
        """
        with anyio.CancelScope(shield=True):
            if self._released.is_set() or self._returncode is not None:
                await anyio.lowlevel.checkpoint()
                return
            self._killed = True
            await terminate_group(self._shared, self._grace, f"command {self._command.display!r}")
            self._release()

    def _release(self) -> None:
        if self._released.is_set():
            return
        self._released.set()
        if not group_alive(self.pid):
            forget_group(self.pid)
        self._readers.clear()  # what is in the buffer stays, for next_chunk()
        self._pending = memoryview(b"")
        self._stdin = None
        for fd in self._fds.open_fds():
            anyio.notify_closing(fd)  # wakes a task waiting on it (ClosedResourceError)
        self._fds.close_all()
        self._child.close()
        on_end, self._on_end = self._on_end, None
        if on_end is not None:
            on_end()


class _SharedChild:
    """A child that several tasks may wait for (the iteration, ``kill()``): one at a time.

    A waiter that is cancelled lets the next one wait; once the child is
    reaped, every later wait returns at once.
    """

    def __init__(self, child: Child) -> None:
        self._child = child
        self._lock = anyio.Lock()

    @property
    def pid(self) -> int:
        return self._child.pid

    @property
    def returncode(self) -> int | None:
        return self._child.returncode

    async def wait(self) -> int:
        async with self._lock:
            return await self._child.wait()


async def open_streaming(
    command: Command,
    *,
    keep_stdin: bool,
    grace: float,
    on_end: Callable[[], None] | None = None,
) -> StreamingProcess:
    """Start *command* with its output captured, and return its :class:`StreamingProcess`.

    With *keep_stdin*, stdin is a pipe kept open after ``command.input``
    for :meth:`StreamingProcess.write_stdin`. *on_end* is called once, when
    the process ended or was killed (to give back a slot). A checkpoint.

    Raises:
        OSError: The program could not be started.
    """
    await anyio.lowlevel.checkpoint()
    if keep_stdin and command.input is None:
        command = dataclasses.replace(command, input=b"")
    command = dataclasses.replace(command, capture=True)
    fds = _Fds()
    try:
        child, stdin, out, err = await _spawn(command, fds)
    except BaseException:
        fds.close_all()
        raise
    watch_group(child.pid)
    return StreamingProcess._create(command, child, fds, stdin, out, err, grace, keep_stdin, on_end)


async def start_streaming(
    command: Command,
    *,
    keep_stdin: bool,
    slot: bool,
    on_end: Callable[[], None] | None = None,
) -> StreamingProcess:
    """:func:`open_streaming` with the kill grace in force, holding a slot while it runs.

    With *slot*, a slot of the ``"subprocesses"`` limit is taken first (the
    wait is not working time) and given back when the process ends or is
    killed, before *on_end* is called.

    **Cancellation:** while waiting for the slot, nothing has started.
    """
    limiter = subprocess_limiter() if slot else None
    owner = object()
    if limiter is not None:
        with waiting():  # the wait for a slot is not working time
            await limiter.acquire_on_behalf_of(owner)

    def release() -> None:
        if limiter is not None:
            limiter.release_on_behalf_of(owner)
        if on_end is not None:
            on_end()

    try:
        return await open_streaming(
            command, keep_stdin=keep_stdin, grace=current_kill_grace(), on_end=release
        )
    except BaseException:
        if limiter is not None:
            limiter.release_on_behalf_of(owner)
        raise


@contextlib.asynccontextmanager
async def open_process(
    args: str | list[str],
    *,
    input: str | bytes | None = None,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin_open: bool = False,
    concurrency: bool = True,
) -> AsyncIterator[StreamingProcess]:
    """Start a supervised command and stream its output, for the length of the block.

    The command runs as :func:`~corral.util.subprocess` runs it (its own
    session and process group, the harness tag, a slot of the
    ``"subprocesses"`` limit unless *concurrency* is false, held until it
    ends), but the block gets its output as it comes::

        async with corral.open_process(["pytest", "-x"]) as process:
            async for stream, text in process:
                print(stream, text, end="")
        print("exit status", process.returncode)

    Args:
        args: A shell command line (run by ``/bin/sh -c``) or a program and
            its arguments.
        input: Written to stdin first (``str`` as UTF-8).
        cwd: Working directory of the child.
        env: Variables set on top of ``os.environ`` for the child.
        stdin_open: Keep stdin open after *input* for
            :meth:`StreamingProcess.write_stdin`, until
            :meth:`StreamingProcess.close_stdin`.
        concurrency: Take a ``"subprocesses"`` slot while it runs.

    Raises:
        TypeError, ValueError: A bad argument (the message names it).
        FileNotFoundError: The program or *cwd* does not exist.
        PermissionError: The program cannot be run.

    **Cancellation:** leaving the block for any reason (its end, an error, a
    cancellation) kills whatever still runs of the command's group (SIGTERM,
    the kill grace, SIGKILL) in a shielded scope, and gives the slot back.
    Waiting for the slot is a checkpoint.
    """
    text = input.encode("utf-8") if isinstance(input, str) else input
    command = check_command(args, text, cwd, env, True)
    check_bool("stdin_open", stdin_open)
    check_bool("concurrency", concurrency)
    process = await start_streaming(command, keep_stdin=stdin_open, slot=concurrency)
    try:
        with trace_action(logger, "Subprocess", "%s (streamed)", command.display):
            yield process
    finally:
        await process.kill()
