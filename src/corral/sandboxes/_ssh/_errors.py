"""The one place where asyncssh's exceptions become the sandbox contract's.

Connecting can fail for reasons worth telling apart: the host is down or
unreachable (another host may take the sample), its key is not trusted, or
it refused our keys (both are configuration errors, never retried on another
host). Once connected, a lost connection is a
:class:`~corral.sandboxes.SandboxUnavailableError` naming the host, and SFTP
status codes become the builtin ``OSError`` subclasses the contract promises,
naming the path.
"""

from __future__ import annotations

import errno
import os
import socket

import asyncssh

from .._errors import SandboxUnavailableError

__all__ = [
    "HostRefusedError",
    "connect_error",
    "is_connection_error",
    "lost_connection",
    "sftp_error",
]


class HostRefusedError(SandboxUnavailableError):
    """The host was reached but will not have us: its key is not trusted, or it refused ours.

    Raised as it is, never retried on another host: it is a configuration
    error, and trying other hosts with the same keys would only hide it.
    """


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


def connect_error(
    exc: BaseException,
    host: str,
    *,
    username: str | None,
    known_hosts: str | None,
    timeout: float,
) -> SandboxUnavailableError:
    """What to raise when connecting to *host* (``user@host:port``) failed with *exc*."""
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


def lost_connection(host: str, action: str, exc: BaseException | None) -> SandboxUnavailableError:
    """The connection to *host* broke during *action* (``"exec 'ls'"``, ``"read_file 'x'"``)."""
    reason = getattr(exc, "reason", None) or (str(exc) if exc else "") or "connection closed"
    return SandboxUnavailableError(f"lost the connection to {host} during {action}: {reason}")


def sftp_error(exc: asyncssh.SFTPError, path: str, host: str, action: str) -> Exception:
    """The builtin ``OSError`` (naming *path*) for an SFTP status, or a lost connection."""
    if isinstance(exc, (asyncssh.SFTPConnectionLost, asyncssh.SFTPNoConnection)):
        return lost_connection(host, f"{action} {path!r}", exc)
    code = {
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
    }.get(type(exc), errno.EIO)
    # OSError(errno, ...) picks the subclass: FileNotFoundError, PermissionError, ...
    return OSError(code, f"{os.strerror(code)} on {host} ({exc.reason})", path)
