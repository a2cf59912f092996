"""The ``"ssh"`` sandbox's native ``exec_remote``: a command's channel, streamed.

:class:`RemoteStream` lives on the SSH loop (see :mod:`._bridge`): the
command runs an exec script on a channel of its own, as ``exec`` does (the
same header, watcher, kill and cleanup), and its output is kept as asyncssh
delivers the channel's data packets. :class:`SSHProcess` is the handle the
caller gets; each of its calls crosses the bridge once.

Writes to stdin while the channel's window is open are handed to the SSH
loop without waiting for it (in order with everything after them); a write
that races the command's end is then dropped silently rather than refused.

**Buffering is bounded** as for the local provider: at most
:data:`~corral._process._stream.BUFFER_LIMIT` bytes of output nobody took
yet are held (plus one SSH packet). At the bound the channel's reading is
paused, so asyncssh stops opening the SSH window and the remote command
blocks in ``write`` until the consumer takes more.
"""

from __future__ import annotations

import asyncio
import codecs
import collections
import contextlib
from typing import TYPE_CHECKING, Literal

import anyio
import anyio.lowlevel
import asyncssh

from ..._process._stream import BUFFER_LIMIT
from .._exec_remote import ExecRemoteProcess, chunk_event, stdin_bytes
from ._bridge import call_soon_on_ssh_loop, run_on_ssh_loop
from ._errors import is_connection_error, lost_connection
from ._remote import HeaderSession

if TYPE_CHECKING:
    from .._exec_remote import ExecOutput
    from ._pool import Link
    from ._remote import RemoteSandbox

__all__ = ["RemoteStream", "SSHProcess", "start_stream"]

Stream = Literal["stdout", "stderr"]


class _StreamSession(HeaderSession):
    """Keeps a streamed command's output, decoded, until it is taken."""

    def __init__(self) -> None:
        super().__init__()
        self.chan: asyncssh.SSHClientChannel[bytes] | None = None
        self._decoders: dict[Stream, codecs.IncrementalDecoder] = {
            "stdout": codecs.getincrementaldecoder("utf-8")(errors="replace"),
            "stderr": codecs.getincrementaldecoder("utf-8")(errors="replace"),
        }
        self.buffer: collections.deque[tuple[Stream, str, int]] = collections.deque()
        self.buffered = 0
        self.paused = False
        self.ready = asyncio.Event()
        self.writable = asyncio.Event()
        self.writable.set()
        self.stderr_head = bytearray()  # for the error when the header is missing

    def output(self, data: bytes, datatype: asyncssh.DataType) -> None:
        name: Stream = "stderr" if datatype == asyncssh.EXTENDED_DATA_STDERR else "stdout"
        if self.header is None and name == "stderr" and len(self.stderr_head) < 500:
            self.stderr_head += data[:500]
        self._keep(name, self._decoders[name].decode(data), len(data))
        if self.buffered >= BUFFER_LIMIT and not self.paused and self.chan is not None:
            self.paused = True
            self.chan.pause_reading()

    def _keep(self, name: Stream, text: str, size: int) -> None:
        if text:
            self.buffer.append((name, text, size))
            self.buffered += size
            self.ready.set()

    def take(self) -> tuple[Stream, str]:
        name, text, size = self.buffer.popleft()
        parts = [text]
        while self.buffer and self.buffer[0][0] == name:
            _, more, more_size = self.buffer.popleft()
            parts.append(more)
            size += more_size
        self.buffered -= size
        if self.paused and self.buffered < BUFFER_LIMIT // 2 and self.chan is not None:
            self.paused = False
            self.chan.resume_reading()
        return name, "".join(parts)

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        for name, decoder in self._decoders.items():
            self._keep(name, decoder.decode(b"", final=True), 0)
        super().connection_lost(exc)
        self.ready.set()
        self.writable.set()


class RemoteStream:
    """A command running on a channel of its own; every method runs on the SSH loop."""

    def __init__(
        self,
        remote: RemoteSandbox,
        link: Link,
        chan: asyncssh.SSHClientChannel[bytes],
        session: _StreamSession,
        grace: float,
        user: str | None,
        action: str,
    ) -> None:
        self.remote = remote
        self._link: Link | None = link
        self._chan = chan
        self._session = session
        self._grace = grace
        self._user = user
        self._action = action
        self.killed = False
        self.completed = False
        self._stdin_closed = False
        assert session.header is not None
        self.pid = int(session.header[0])
        self.status = session.header[2]

    @property
    def ended(self) -> bool:
        return self.killed or self.completed

    async def next(self) -> tuple[Stream, str] | int | None:
        """The next piece of output; then the exit status; then ``None``."""
        session = self._session
        while True:
            if session.buffer:
                return session.take()
            if self.ended:
                await anyio.lowlevel.checkpoint()
                return None
            if session.closed.is_set():
                return self._complete()
            session.ready.clear()
            await session.ready.wait()

    def _complete(self) -> int:
        self.completed = True
        self._release()
        lost = self._session.lost
        if lost is not None and is_connection_error(lost):
            raise lost_connection(self.remote.label, self._action, lost)
        returncode = self._chan.get_returncode()
        return -1 if returncode is None else returncode

    def writable_now(self) -> bool:
        """Whether a write would be taken at once (read from any thread: a hint only)."""
        return (
            not self.ended
            and not self._stdin_closed
            and not self._session.closed.is_set()
            and self._session.writable.is_set()
        )

    def write_nowait(self, data: bytes) -> None:
        """Send *data* without waiting; dropped if the channel closed meanwhile."""
        if self.ended or self._stdin_closed:
            return
        with contextlib.suppress(BrokenPipeError, ConnectionError):
            self._chan.write(data)

    async def write(self, data: bytes) -> None:
        """Send *data* to the command's stdin, waiting while the channel's window is full."""
        if self._stdin_closed:  # the caller's own doing: said first
            raise RuntimeError("cannot write to stdin: it is closed")
        if self.ended or self._session.closed.is_set():
            raise RuntimeError("cannot write to stdin: the process has ended")
        try:
            self._chan.write(data)
        except (BrokenPipeError, ConnectionError):
            raise RuntimeError("cannot write to stdin: the process has ended") from None
        await self._session.writable.wait()

    async def close_stdin(self) -> None:
        await anyio.lowlevel.checkpoint()
        if self._stdin_closed or self.ended or self._session.closed.is_set():
            return
        self._stdin_closed = True
        with contextlib.suppress(BrokenPipeError, ConnectionError):
            self._chan.write_eof()

    async def kill(self) -> None:
        """Kill the command's group (TERM, the grace, KILL), close its channel; idempotent."""
        if self.ended:
            await anyio.lowlevel.checkpoint()
            return
        self.killed = True
        link = self._link
        try:
            if link is not None:
                with anyio.CancelScope(shield=True):
                    await self.remote.stop(link, self._chan, self._session, self._grace, self._user)
        finally:
            self._release()

    async def wait_closed(self) -> None:
        """For a command that did not start: wait for its script to end."""
        try:
            await self._session.closed.wait()
        finally:
            self.completed = True
            self._release()

    def _release(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            self.remote.pool.release(link)
        self.remote.streams.discard(self)


async def start_stream(
    remote: RemoteSandbox,
    script: str,
    preamble: bytes,
    data: bytes | None,
    keep_stdin: bool,
    grace: float,
    action: str,
    user: str | None,
) -> RemoteStream:
    """Run *script* on a new channel; return once its header says whether the command started.

    Raises:
        SandboxUnavailableError: The connection broke, or the host did not
            run the script.

    **Cancellation:** the command is killed and its channel closed first.
    """
    remote._check_open()
    command = await remote.command_for(script)
    session = _StreamSession()
    link, chan = await remote.pool.open_session(session, command, action)
    session.chan = chan
    try:
        try:
            if preamble:
                chan.write(preamble)
            if data:
                chan.write(data)
            if data is not None and not keep_stdin:
                chan.write_eof()
        except (BrokenPipeError, ConnectionError):
            pass  # the channel closed already: the header (or its absence) says why
        await session.header_seen.wait()
        if session.header is None:
            raise remote.no_header(link, session, action, bytes(session.stderr_head))
    except BaseException:
        with anyio.CancelScope(shield=True):
            await remote.stop(link, chan, session, grace, user)
        remote.pool.release(link)
        raise
    stream = RemoteStream(remote, link, chan, session, grace, user, action)
    remote.streams.add(stream)
    return stream


class SSHProcess(ExecRemoteProcess):
    """A command of the ssh sandbox, streamed; see ``SSHSandboxEnvironment.exec_remote``."""

    def __init__(self, stream: RemoteStream, keep_stdin: bool, command: str) -> None:
        self._stream = stream
        self._keep_stdin = keep_stdin
        self._command = command

    def __repr__(self) -> str:
        stream = self._stream
        state = "killed" if stream.killed else "ended" if stream.completed else "running"
        return f"<SSHProcess {self._command!r} on {stream.remote.label} pid={stream.pid} {state}>"

    @property
    def pid(self) -> int:
        """The command's process id on the host."""
        return self._stream.pid

    async def __anext__(self) -> ExecOutput:
        try:
            chunk = await run_on_ssh_loop(self._stream.next)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.kill()
            raise
        return chunk_event(chunk)

    async def write_stdin(self, data: str | bytes) -> None:
        payload = stdin_bytes(self._keep_stdin, "write_stdin", data)
        if self._stream.writable_now():
            # The window is open: hand the data over without a round trip to the
            # SSH loop (it is written in order with every later call).
            call_soon_on_ssh_loop(self._stream.write_nowait, payload)
            await anyio.lowlevel.checkpoint()
        else:
            await run_on_ssh_loop(self._stream.write, payload)

    async def close_stdin(self) -> None:
        stdin_bytes(self._keep_stdin, "close_stdin")
        await run_on_ssh_loop(self._stream.close_stdin)

    async def kill(self) -> None:
        with anyio.CancelScope(shield=True):
            await run_on_ssh_loop(self._stream.kill)
