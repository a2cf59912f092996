"""The one place where asyncssh's exceptions become the sandbox contract's.

Two context managers do every conversion, as httpx maps httpcore's
exceptions in one place:

* :func:`connecting` around opening a connection: the host is down or
  unreachable (another host may take the sample), or it refused us (its key
  is not trusted, or it refused our keys: :class:`HostRefusedError`, a
  configuration error never retried elsewhere), or a local file the
  configuration names cannot be used (a key that does not parse, a file
  named in the ``ssh_config``, a user name asyncssh will not send:
  :class:`~._config.SSHConfigError`, a ``ValueError`` and a
  ``HostRefusedError`` naming the field and the path; the host is not to
  blame);
* :func:`talking` around everything done on an open connection: a lost
  connection becomes :class:`~corral.util.SandboxUnavailableError` naming
  the host and what was being done, and an SFTP status becomes the builtin
  ``OSError`` subclass the contract promises (``FileNotFoundError``,
  ``PermissionError``, ...), naming the path.

Errors of our own raised inside the blocks pass through untouched.

Hierarchy of what :func:`connecting` raises::

    RuntimeError
    └── SandboxUnavailableError       the host cannot be reached (it is passed over a while)
        └── HostRefusedError          never retried elsewhere, the host not passed over
            └── SSHConfigError        (also a ValueError) a local file or name is unusable
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from typing import TYPE_CHECKING

import asyncssh

from .._errors import HostRefusedError, SandboxUnavailableError
from ._config import DEFAULT_SSH_CONFIG, IGNORE_KNOWN_HOSTS, SSHConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from ._config import SSHSandboxConfig

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


def _is_local_file_error(exc: BaseException) -> bool:
    """Whether *exc* is about a local file (a key, known_hosts, ssh_config), not the network."""
    return isinstance(exc, OSError) and exc.filename is not None


def _first_bad(paths: list[str], check: Callable[[str], object]) -> tuple[str, Exception] | None:
    for path in paths:
        try:
            check(path)
        except (OSError, ValueError) as exc:
            return path, exc
    return None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc) or type(exc).__name__


def _config_error(
    exc: BaseException, config: SSHSandboxConfig, username: str | None
) -> SSHConfigError:
    """What local file (or name) of *config* made asyncssh fail with *exc*, named."""
    prefix = "invalid ssh sandbox configuration: "
    ssh_config = config.config or DEFAULT_SSH_CONFIG
    known_hosts = (
        [config.known_hosts]
        if config.known_hosts is not None and config.known_hosts != IGNORE_KNOWN_HOSTS
        else []
    )
    if isinstance(exc, OSError):
        path = str(exc.filename)
        if path in (config.client_keys or ()):
            field = "client_keys"
        elif path in known_hosts:
            field = "known_hosts"
        elif path == config.config:
            field = "config"
        else:
            return SSHConfigError(
                f"{prefix}config: cannot read {path}, named in {ssh_config}: {_reason(exc)}"
            )
        return SSHConfigError(f"{prefix}{field}: cannot read {path}: {_reason(exc)}")
    if isinstance(exc, asyncssh.saslprep.SASLPrepError):
        if username is not None:
            return SSHConfigError(
                f"{prefix}hosts: the username {username!r} cannot be sent over SSH: {exc}"
            )
        return SSHConfigError(
            f"{prefix}config: the User in {ssh_config} cannot be sent over SSH: {exc}"
        )
    if isinstance(exc, asyncssh.config.ConfigParseError):
        return SSHConfigError(f"{prefix}config: {exc}")
    if isinstance(exc, asyncssh.KeyImportError):
        bad = _first_bad(list(config.client_keys or ()), asyncssh.read_private_key)
        if bad is not None:
            return SSHConfigError(
                f"{prefix}client_keys: cannot use the key {bad[0]}: {_reason(bad[1])}"
            )
        return SSHConfigError(
            f"{prefix}config: a key named by IdentityFile in {ssh_config} cannot be used: {exc}"
        )
    bad = _first_bad(known_hosts, asyncssh.read_known_hosts)
    if bad is not None:
        return SSHConfigError(f"{prefix}known_hosts: cannot use {bad[0]}: {_reason(bad[1])}")
    return SSHConfigError(
        f"{prefix}a file named in {ssh_config} (UserKnownHostsFile, IdentityFile), or "
        f"~/.ssh/known_hosts, cannot be used: {_reason(exc)}"
    )


@contextlib.contextmanager
def connecting(host: str, *, username: str | None, config: SSHSandboxConfig) -> Iterator[None]:
    """Map a failure to connect to *host* (``user@host:port``) with *config* in the block.

    Args:
        host: The host, for messages.
        username: The user name the configuration gives for it, if any.
        config: The configuration connected with (keys, known_hosts, timeout).

    Raises:
        SSHConfigError: A local file or name of *config* cannot be used (the
            message names the field and the path); not the host's fault.
        HostRefusedError: The host key is not trusted, or our keys were refused.
        SandboxUnavailableError: The host cannot be reached (the message says why).
    """
    try:
        yield
    except SandboxUnavailableError:
        raise
    except (OSError, asyncssh.Error, ValueError) as exc:
        if isinstance(exc, ValueError) or _is_local_file_error(exc):
            raise _config_error(exc, config, username) from exc
        raise _connect_error(
            exc, host, username, config.known_hosts, config.connect_timeout
        ) from exc


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
