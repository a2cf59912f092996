"""The one place where asyncssh's exceptions become the sandbox contract's.

Two context managers do every conversion, as httpx maps httpcore's
exceptions in one place:

* :func:`connecting` around opening a connection: the host is down or
  unreachable (another host may take the sample), or it refused us (its key
  is not trusted, or it refused our keys: :class:`HostRefusedError`, a
  configuration error never retried elsewhere);
* :func:`talking` around everything done on an open connection: a lost
  connection becomes :class:`~corral.util.SandboxUnavailableError` naming
  the host and what was being done, and an SFTP status becomes the builtin
  ``OSError`` subclass the contract promises (``FileNotFoundError``,
  ``PermissionError``, ...), naming the path.

Errors of our own raised inside the blocks pass through untouched.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from typing import TYPE_CHECKING

import asyncssh

from .._errors import HostRefusedError, SandboxUnavailableError

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["connecting", "is_connection_error", "lost_connection", "talking"]

_SFTP_ERRNO: dict[type[asyncssh.SFTPError], int] = {
    asyncssh.SFTPNoSuchFile: errno.ENOENT,
    asyncssh.SFTPNoSuchPath: errno.ENOENT,
    asyncssh.SFTPPermissionDenied: errno.EACCES,
    asyncssh.SFTPWriteProtect: errno.EROFS,
    asyncssh.SFTPFileIsADirectory: errno.EISDIR,
    asyncssh.SFTPNotADirectory: errno.ENOTDIR,
    asyncssh.SFTPNoSpaceOnFilesystem: errno.ENOSPC,
    asyncssh.SFTPQuotaExceeded: errno.EDQUOT,
    asyncssh.SFTPFileAlreadyExists: errno.EEXIST,
    asyncssh.SFTPInvalidFilename: errno.EINVAL,
}


def is_connection_error(exc: BaseException) -> bool:
    """Whether *exc* means the connection (not the command) failed."""
    return isinstance(
        exc,
        (
            asyncssh.DisconnectError,
            asyncssh.SFTPConnectionLost,
            asyncssh.SFTPNoConnection,
            ConnectionError,
            BrokenPipeError,
            EOFError,
        ),
    )


def _connect_error(
    exc: BaseException, host: str, username: str | None, known_hosts: str | None, timeout: float
) -> SandboxUnavailableError:
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        where = (
            f"the known_hosts file {known_hosts}"
            if known_hosts
            else "the user's known_hosts file (~/.ssh/known_hosts)"
        )
        return HostRefusedError(
            f"the host key of {host} is not trusted: {exc.reason}. It was checked against "
            f"{where}; add the host's key there (ssh-keyscan), or set known_hosts = "
            '"ignore" to turn host key verification off'
        )
    if isinstance(exc, asyncssh.PermissionDenied):
        return HostRefusedError(
            f"authentication failed for user {username or '(default)'!r} at {host}: "
            f"{exc.reason or 'permission denied'}; check client_keys and that the key is "
            "in the user's authorized_keys"
        )
    if isinstance(exc, TimeoutError):
        return SandboxUnavailableError(
            f"cannot connect to {host}: no answer within connect_timeout={timeout:g} s"
        )
    if isinstance(exc, socket.gaierror):
        return SandboxUnavailableError(f"cannot connect to {host}: unknown host ({exc.strerror})")
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc) or type(exc).__name__
        return SandboxUnavailableError(f"cannot connect to {host}: {reason}")
    if isinstance(exc, asyncssh.Error):
        return SandboxUnavailableError(f"cannot connect to {host}: {exc.reason}")
    return SandboxUnavailableError(f"cannot connect to {host}: {exc!r}")


@contextlib.contextmanager
def connecting(
    host: str, *, username: str | None, known_hosts: str | None, timeout: float
) -> Iterator[None]:
    """Map a failure to connect to *host* (``user@host:port``) in the block.

    Raises:
        HostRefusedError: The host key is not trusted, or our keys were refused.
        SandboxUnavailableError: The host cannot be reached (the message says why).
    """
    try:
        yield
    except (OSError, asyncssh.Error) as exc:
        raise _connect_error(exc, host, username, known_hosts, timeout) from exc


def lost_connection(host: str, action: str, exc: BaseException | None) -> SandboxUnavailableError:
    """The connection to *host* broke during *action* (``"exec 'ls'"``, ``"read_file 'x'"``)."""
    reason = getattr(exc, "reason", None) or (str(exc) if exc else "") or "connection closed"
    return SandboxUnavailableError(f"lost the connection to {host} during {action}: {reason}")


def _sftp_error(exc: asyncssh.SFTPError, path: str, host: str, action: str) -> Exception:
    if isinstance(exc, (asyncssh.SFTPConnectionLost, asyncssh.SFTPNoConnection)):
        return lost_connection(host, f"{action} {path!r}", exc)
    code = _SFTP_ERRNO.get(type(exc), errno.EIO)
    # OSError(errno, ...) picks the subclass: FileNotFoundError, PermissionError, ...
    return OSError(code, f"{os.strerror(code)} on {host} ({exc.reason})", path)


@contextlib.contextmanager
def talking(host: str, action: str, *, path: str | None = None) -> Iterator[None]:
    """Map what goes wrong on an open connection to *host* during *action*.

    With *path* (the caller's path, for messages), SFTP statuses become the
    builtin ``OSError`` subclasses naming it.

    Raises:
        SandboxUnavailableError: The connection broke (naming the host and *action*).
        OSError: An SFTP status, as ``FileNotFoundError``, ``PermissionError``, ...
    """
    try:
        yield
    except asyncssh.SFTPError as exc:
        if path is None:
            raise lost_connection(host, action, exc) from exc
        raise _sftp_error(exc, path, host, action) from exc
    except (OSError, asyncssh.Error) as exc:
        what = action if path is None else f"{action} {path!r}"
        raise lost_connection(host, what, exc) from exc
