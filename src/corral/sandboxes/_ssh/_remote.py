"""One sample's sandbox on a host, as seen from the SSH loop.

:class:`RemoteSandbox` does the network work of
:class:`~corral.sandboxes._ssh.SSHSandboxEnvironment`: running an exec
script on a channel of its own, SFTP reads and writes, and the final
cleanup. Its coroutines run on the SSH loop (see :mod:`._bridge`) and take
everything they need from the caller as arguments.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import posixpath
import shlex
import stat
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import anyio
import anyio.lowlevel
import asyncssh

from ..._core._files import file_kind
from .._errors import HostRefusedError, SandboxUnavailableError
from ._errors import is_connection_error, lost_connection, talking
from ._pool import ANSWER_WAIT, CommandFailedError, HostPool, HostSet, Link, let_go
from ._script import HEADER, cleanup_script, kill_script

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ..._core._tail import TailBuffer
    from ._stream import RemoteStream

__all__ = ["ExecOutcome", "HeaderSession", "RemoteSandbox"]

logger = logging.getLogger("corral.sandbox")

#: A header longer than this is not ours: the login shell printed something first.
_MAX_HEADER = 256
#: Seconds to wait, when killing, for the header that says which group to kill.
_HEADER_WAIT = 5.0
#: Seconds the kill itself (TERM, grace, KILL) may take beyond the grace.
_KILL_MARGIN = 5.0
#: What an SFTP client raises once its own session has ended.
_SFTP_GONE = (asyncssh.SFTPConnectionLost, asyncssh.SFTPNoConnection)

T = TypeVar("T")


#: Larger exec scripts are sent as a file over SFTP (an SSH packet is at
#: most 256 KiB, and a channel request must fit in one).
MAX_INLINE_SCRIPT = 64 * 1024
#: The first and the longest pause between two tries of a sample's cleanup.
CLEANUP_BACKOFF = (0.25, 4.0)


@dataclass(slots=True)
class ExecOutcome:
    """What an exec script did: its header's status, and the command's exit status."""

    status: str
    returncode: int


class HeaderSession(asyncssh.SSHClientSession[bytes]):
    """An exec script's channel: its header line, then the command's output.

    The header (see :mod:`._script`) is taken off the start of stdout; all
    output after it goes to :meth:`output`, which subclasses define.
    """

    def __init__(self) -> None:
        self._pending = bytearray()
        self.header: list[str] | None = None
        self.bad_header: bytes | None = None
        # An Event, not a future: cancelling a waiter must not mark the channel closed.
        self.closed = asyncio.Event()
        self.header_seen = asyncio.Event()
        self.lost: BaseException | None = None

    def output(self, data: bytes, datatype: asyncssh.DataType) -> None:
        """The command wrote *data* (on stderr if *datatype* says so)."""
        raise NotImplementedError

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if datatype == asyncssh.EXTENDED_DATA_STDERR:
            self.output(data, datatype)
            return
        if self.header is None and self.bad_header is None:
            pending = self._pending
            pending += data
            end = pending.find(b"\n")
            if end < 0:
                if len(pending) > _MAX_HEADER:
                    self._reject(bytes(pending))
                return
            words = bytes(pending[:end]).split()
            if len(words) != 4 or words[0] != HEADER:
                self._reject(bytes(pending))
                return
            self.header = [word.decode("ascii", "replace") for word in words[1:]]
            self.header_seen.set()
            data = bytes(pending[end + 1 :])
            pending.clear()
            if not data:
                return
        self.output(data, datatype)

    def _reject(self, data: bytes) -> None:
        self.bad_header = data
        self.header_seen.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc
        self.header_seen.set()
        self.closed.set()


class _ExecSession(HeaderSession):
    """Collects an exec script's output into the caller's buffers."""

    def __init__(self, stdout: TailBuffer, stderr: TailBuffer) -> None:
        super().__init__()
        self.stdout = stdout
        self.stderr = stderr

    def output(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if datatype == asyncssh.EXTENDED_DATA_STDERR:
            self.stderr.append(data)
        else:
            self.stdout.append(data)


class RemoteSandbox:
    """A working directory on a host, and the network work done in it.

    Args:
        hosts: The host set it was placed from (held until :meth:`close`).
        pool: The host's connection pool.
        workdir: The sample's working directory on the host.
        tag: The token that marks every process it starts.
    """

    def __init__(self, hosts: HostSet, pool: HostPool, workdir: str, tag: str) -> None:
        self.hosts = hosts
        self.pool = pool
        self.workdir = workdir
        self.tag = tag
        self.closed = False
        #: Commands of ``exec_remote`` still running: killed by :meth:`close`.
        self.streams: set[RemoteStream] = set()

    @property
    def label(self) -> str:
        return self.pool.label

    def _check_open(self) -> None:
        if self.closed:
            raise SandboxUnavailableError(
                f"the ssh sandbox in {self.workdir} on {self.label} has been cleaned up"
            )

    def resolve(self, path: str) -> str:
        return posixpath.join(self.workdir, path)

    # -- exec -----------------------------------------------------------------------

    async def exec(
        self,
        script: str,
        input: bytes | None,
        stdout: TailBuffer,
        stderr: TailBuffer,
        grace: float,
        action: str,
        user: str | None = None,
        preamble: bytes = b"",
    ) -> ExecOutcome:
        """Run an exec *script* (see :mod:`._script`), its output going to *stdout*/*stderr*.

        *user* is the other user the script runs the command as, if any.
        *preamble* (the line of variables the script reads first) is sent
        before *input*; EOF follows *input* only, so that without input a
        watcher reading the channel (see :mod:`._script`) still waits for its close.

        Raises:
            SandboxUnavailableError: The connection broke, or the host did
                not run the script.

        **Cancellation:** the command's process group is killed (TERM,
        *grace*, KILL) and its channel closed before the cancellation
        propagates; what it printed stays in the buffers.
        """
        self._check_open()
        command = await self.command_for(script)
        session = _ExecSession(stdout, stderr)
        link, chan = await self.pool.open_session(session, command, action)
        try:
            try:
                if preamble:
                    chan.write(preamble)
                if input is not None:  # otherwise the script gave it /dev/null
                    if input:
                        chan.write(input)
                    chan.write_eof()
            except (BrokenPipeError, ConnectionError):
                pass  # the channel closed already: the command did not read it all
            await session.closed.wait()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.stop(link, chan, session, grace, user)
            raise
        finally:
            self.pool.release(link)
        if session.lost is not None and is_connection_error(session.lost):
            raise lost_connection(self.label, action, session.lost)
        if session.header is None:
            raise self.no_header(link, session, action, stderr.value())
        returncode = chan.get_returncode()
        return ExecOutcome(
            status=session.header[2], returncode=-1 if returncode is None else returncode
        )

    async def command_for(self, script: str) -> str:
        """The command line that runs *script* (sent as a file first when it is large)."""
        if len(script.encode("utf-8")) > MAX_INLINE_SCRIPT:
            return await self._script_file(script)
        await anyio.lowlevel.checkpoint()
        return script

    def no_header(
        self, link: Link, session: HeaderSession, action: str, stderr: bytes
    ) -> SandboxUnavailableError:
        """The error for a channel that ended, or went on, without a header of ours."""
        if link.closed:
            return lost_connection(self.label, action, session.lost)
        shown = (session.bad_header or stderr)[:500]
        return SandboxUnavailableError(
            f"{self.label} did not run the command as expected (is the login shell "
            f"POSIX-compatible?): {shown.decode('utf-8', 'replace').strip()!r}"
        )

    async def stop(
        self,
        link: Link,
        chan: asyncssh.SSHClientChannel[bytes],
        session: HeaderSession,
        grace: float,
        user: str | None,
    ) -> None:
        """Kill a command that timed out or was cancelled, then close its channel."""
        try:
            if not session.closed.is_set() and not link.closed:
                with anyio.move_on_after(_HEADER_WAIT):
                    await session.header_seen.wait()
                header = session.header
                if header is not None and not session.closed.is_set():
                    pid, pgid = int(header[0]), int(header[1])
                    with anyio.move_on_after(grace + _KILL_MARGIN):
                        script = kill_script(pid, pgid, grace, user)
                        await self.pool.run(script, "killing a command", answer_within=ANSWER_WAIT)
        except (OSError, asyncssh.Error, SandboxUnavailableError, ValueError) as exc:
            logger.warning("could not kill a command on %s: %r", self.label, exc)
        finally:
            chan.close()
            if not link.retired:  # a retired connection may never confirm the close
                with anyio.move_on_after(_KILL_MARGIN):
                    await chan.wait_closed()

    async def _script_file(self, script: str) -> str:
        """Send a large *script* as a file that deletes itself; return the command that runs it."""
        path = self.resolve(f".corral-exec-{os.urandom(6).hex()}.sh")
        await self.write(path, ('rm -f -- "$0"\n' + script).encode("utf-8"))
        return f"exec /bin/sh {shlex.quote(path)}"

    # -- files ----------------------------------------------------------------------

    async def read(self, path: str, limit: int, shown: str) -> bytes | None:
        """The bytes of *path*, or ``None`` when it is over *limit* (nothing read then).

        Raises:
            FileNotFoundError, PermissionError, IsADirectoryError, OSError:
                As SFTP reports them, naming *shown* (the caller's path).
            SandboxUnavailableError: The connection broke.
        """
        self._check_open()

        async def read(sftp: asyncssh.SFTPClient) -> bytes | None:
            with talking(self.label, "read_file", path=shown):
                attrs = await sftp.stat(path)
            mode = attrs.permissions
            if mode is not None and stat.S_ISDIR(mode):
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), shown)
            if mode is not None and not stat.S_ISREG(mode):
                # Opening a FIFO would hold the host's SFTP session until a writer comes.
                raise OSError(
                    errno.EINVAL, f"only regular files are read; this is {file_kind(mode)}", shown
                )
            if attrs.size is not None and attrs.size > limit:
                return None
            with talking(self.label, "read_file", path=shown):
                async with sftp.open(path, "rb") as f:
                    data: bytes = await f.read(limit + 1)
            return None if len(data) > limit else data

        return await self._with_sftp(read)

    async def write(self, path: str, data: bytes, shown: str | None = None) -> None:
        """Write *data* to *path*, creating its parents.

        Raises:
            IsADirectoryError: *path* is a directory.
            OSError: *path* is a FIFO, a socket or a device (nothing is written).
            PermissionError, OSError: As SFTP reports them, naming *shown*.
            SandboxUnavailableError: The connection broke.
        """
        self._check_open()
        shown = path if shown is None else shown

        async def write(sftp: asyncssh.SFTPClient) -> bool:
            with talking(self.label, "write_file", path=shown):
                mode = await self._mode(sftp, path)
            if mode is not None and not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
                # Opening a FIFO would hold the host's SFTP session until a reader comes.
                raise OSError(
                    errno.EINVAL,
                    f"only regular files are written; this is {file_kind(mode)}",
                    shown,
                )
            with talking(self.label, "write_file", path=shown):
                try:
                    await self._write(sftp, path, data)
                except (asyncssh.SFTPFailure, asyncssh.SFTPPermissionDenied):
                    # SFTP has no status for "is a directory": look before saying so.
                    if not await self._is_dir(sftp, path):
                        raise
                    return False
            return True

        if not await self._with_sftp(write):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), shown)

    async def _with_sftp(self, operation: Callable[[asyncssh.SFTPClient], Awaitable[T]]) -> T:
        """Run *operation* with the host's SFTP client, replacing a client found dead once.

        The SFTP session can end while its connection lives on (the server's
        sftp process killed, say); the pool would otherwise keep handing out
        the dead client to every sample on the host.

        **Cancellation:** an operation cancelled before its answer came drops
        the host's SFTP session: the server answers one request at a time,
        and the one abandoned may never be answered (a file that became a
        FIFO after our stat). Other samples' operations on it fail with the
        session and are tried again on a new one.
        """
        for attempt in (1, 2):
            sftp = await self.pool.sftp()
            try:
                return await operation(sftp)
            except asyncio.CancelledError:  # on the SSH loop: always asyncio
                self.pool.drop_sftp(sftp)
                raise
            except SandboxUnavailableError as exc:
                if attempt == 2 or not isinstance(exc.__cause__, _SFTP_GONE):
                    raise
                logger.info("the SFTP session to %s ended; starting another", self.label)
                self.pool.drop_sftp(sftp)
        raise AssertionError("unreachable")

    @staticmethod
    async def _mode(sftp: asyncssh.SFTPClient, path: str) -> int | None:
        """*path*'s mode, or ``None`` if it does not exist (yet)."""
        try:
            attrs = await sftp.stat(path)
        except (asyncssh.SFTPNoSuchFile, asyncssh.SFTPNoSuchPath):
            return None
        return attrs.permissions

    @staticmethod
    async def _is_dir(sftp: asyncssh.SFTPClient, path: str) -> bool:
        try:
            return bool(await sftp.isdir(path))
        except (OSError, asyncssh.Error):
            return False

    @staticmethod
    async def _write(sftp: asyncssh.SFTPClient, path: str, data: bytes) -> None:
        try:
            async with sftp.open(path, "wb") as f:
                await f.write(data)
        except (asyncssh.SFTPNoSuchFile, asyncssh.SFTPNoSuchPath):
            parent = posixpath.dirname(path)
            if not parent or parent == path:
                raise
            await sftp.makedirs(parent, exist_ok=True)
            async with sftp.open(path, "wb") as f:
                await f.write(data)

    # -- cleanup --------------------------------------------------------------------

    async def close(self) -> int:
        """Kill what the sample left running, remove its directory, release the host.

        While the host cannot be reached, the cleanup is tried again with
        backoff (:data:`CLEANUP_BACKOFF`) for up to the configuration's
        ``cleanup_retry`` seconds. Calling it again does nothing.

        Returns:
            How many leftover processes were killed.

        Raises:
            SandboxUnavailableError: The host could not be reached in that
                time, or the cleanup failed on it (the directory and any
                leftovers stay; the host is released anyway).

        **Cancellation:** stops at once (between tries, or abandoning the
        channel of the one in flight); the host is released.
        """
        if self.closed:
            return 0
        self.closed = True
        try:
            for stream in list(self.streams):  # killed and reaped, not counted as leftovers
                await stream.kill()
            killed = await self._cleanup()
        finally:
            self.hosts.release(self.pool)
            await let_go(self.hosts)
        # Here, and only here, the sample's directory and processes are known gone.
        return killed

    async def _cleanup(self) -> int:
        script = cleanup_script(self.workdir, self.tag)
        deadline = time.monotonic() + self.hosts.config.cleanup_retry
        pause = CLEANUP_BACKOFF[0]
        while True:
            try:
                output = await self.pool.run(script, "cleanup", answer_within=ANSWER_WAIT)
            except (HostRefusedError, CommandFailedError):
                raise
            except SandboxUnavailableError as exc:
                left = deadline - time.monotonic()
                if left <= 0 or self.pool.closed:
                    raise
                logger.info(
                    "cleanup of %s on %s failed, trying again in %g s: %s",
                    self.workdir,
                    self.label,
                    min(pause, left),
                    exc,
                )
                await anyio.sleep(min(pause, left))
                pause = min(pause * 2, CLEANUP_BACKOFF[1])
                continue
            return int(output.strip() or 0)
