"""Configuration of the ``"ssh"`` sandbox: which hosts, which keys, which checks.

:class:`SSHSandboxConfig` is what the provider works from. Users may give it
as the model itself, a dict, the path of a TOML, YAML or JSON file, or a URL
``ssh://user@host:port``; :meth:`SSHSandboxConfig.load` accepts all of them
and names what is wrong with a bad one. This module does not import asyncssh,
so configurations can be checked without it.

:meth:`SSHSandboxConfig.load` also checks, before anything connects, the
local files the configuration names (see :meth:`SSHSandboxConfig.check_files`):
a missing, unreadable or non-UTF-8 file, or an ``ssh_config`` that would turn
host key verification off, raises :class:`SSHConfigError` naming the field
and the path.
"""

from __future__ import annotations

import errno
import glob
import os
import shlex
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Self
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..._core._config_files import CONFIG_SUFFIXES, load_config_file
from .._errors import HostRefusedError

__all__ = ["DEFAULT_SSH_CONFIG", "SSHConfigError", "SSHHostConfig", "SSHSandboxConfig"]

#: ``known_hosts`` value that turns host key verification off.
IGNORE_KNOWN_HOSTS = "ignore"
#: The ``ssh_config`` read when ``config`` is not set (if it exists), as asyncssh does.
DEFAULT_SSH_CONFIG = "~/.ssh/config"
#: Where a relative ``Include`` of an ``ssh_config`` is looked for, as asyncssh does.
_INCLUDE_BASE = "~/.ssh"
#: Bytes read at most from a key or known_hosts file to check it (a larger one is refused).
_MAX_FILE = 16 * 1024 * 1024


class SSHConfigError(HostRefusedError, ValueError):
    """A local file the ssh configuration names is missing, unreadable or invalid.

    Also raised for an ``ssh_config`` that would turn host key verification
    off. The message names the field (``client_keys``, ``known_hosts``,
    ``config``, ``hosts``) and the path. It is a ``ValueError``, as every
    invalid configuration is, and a :class:`~corral.sandboxes.HostRefusedError`,
    so that when it is found only on connecting (a key file that does not
    parse, a file named inside the ``ssh_config``) it is handled as a
    configuration error: raised as it is, never retried on another host, and
    the host is not marked down (it is not the host's fault).
    """


def _parse_host(text: str) -> dict[str, Any]:
    """``[user@]host[:port]`` as the fields of an :class:`SSHHostConfig`."""
    if not text or text != text.strip():
        raise ValueError(f"invalid host {text!r}: expected [user@]host[:port]")
    parts = urlsplit(f"ssh://{text}")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"invalid port in host {text!r}") from exc
    if not parts.hostname or parts.path or parts.query or parts.fragment or parts.password:
        raise ValueError(f"invalid host {text!r}: expected [user@]host[:port]")
    fields: dict[str, Any] = {"host": parts.hostname}
    if port is not None:
        fields["port"] = port
    if parts.username:
        fields["username"] = unquote(parts.username)
    return fields


class SSHHostConfig(BaseModel):
    """One machine samples may run on.

    Also accepted as a string ``"[user@]host[:port]"``.

    Attributes:
        host: Host name or address, or a ``Host`` alias of the ``ssh_config``
            (whose ``HostName`` then names the machine).
        port: SSH port; ``None`` lets the ``ssh_config`` decide (its
            ``Port``, else 22), as ``ssh`` does. A port given here wins
            over the ``ssh_config``.
        username: Login name; ``None`` lets the ``ssh_config`` (its
            ``User``, else the local user name) decide, as ``ssh`` does.
        max_sandboxes: Samples this host may hold at once; ``None``: no limit
            of its own (samples still go to the least loaded host).
        max_sessions: Channels opened at once on one connection: the
            server's ``MaxSessions`` (OpenSSH's default is 10). More
            connections are opened when more are needed.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    host: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535)
    username: str | None = Field(default=None, min_length=1)
    max_sandboxes: int | None = Field(default=None, ge=1)
    max_sessions: int = Field(default=10, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: object) -> object:
        if isinstance(value, str):
            return _parse_host(value)
        return value

    @property
    def label(self) -> str:
        """``[user@]host[:port]`` as written, as messages name the host.

        What the configuration leaves to the ``ssh_config`` (the port, the
        user) is not shown: ``box`` rather than a guess at ``box:22``.
        """
        prefix = f"{self.username}@" if self.username else ""
        if self.port is None:
            return f"{prefix}{self.host}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{prefix}{host}:{self.port}"


class SSHSandboxConfig(BaseModel):
    """Where and how the ``"ssh"`` sandbox runs samples.

    Attributes:
        hosts: One or more hosts; each sample goes to the least loaded one
            that can be reached.
        client_keys: Private key files to log in with; ``None`` uses the
            SSH agent and the default keys (``~/.ssh/id_*``), as ``ssh`` does.
        known_hosts: The known_hosts file to verify host keys against;
            ``None`` uses the user's (``~/.ssh/known_hosts``). Verification
            is turned off only by writing ``"ignore"``.
        config: An ``ssh_config`` file, read as OpenSSH's client reads it
            (``Host`` blocks, ``HostName``, ``User``, ``Port``,
            ``IdentityFile``, ...); ``None`` reads ``~/.ssh/config`` if it exists.
        workdir_base: Remote directory under which each sample gets its own
            working directory (``mktemp -d``).
        connect_timeout: Seconds to connect and authenticate.
        keepalive_interval: Seconds between keepalive probes; a connection
            that misses three in a row is closed.
        cleanup_retry: Seconds a sample's cleanup (killing what it left
            running, removing its directory) keeps being retried, with
            backoff (0.25 s doubling to 4 s), while its host cannot be
            reached; ``0`` tries once. The runtime abandons a cleanup after
            60 s, so keep this plus ``connect_timeout`` under that.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    hosts: list[SSHHostConfig] = Field(min_length=1)
    client_keys: list[str] | None = None
    known_hosts: str | None = None
    config: str | None = None
    workdir_base: str = "/tmp"
    connect_timeout: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    keepalive_interval: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    cleanup_retry: float = Field(default=30.0, ge=0, allow_inf_nan=False)

    @field_validator("hosts", mode="before")
    @classmethod
    def _one_host(cls, value: object) -> object:
        if isinstance(value, (str, Mapping, SSHHostConfig)):
            return [value]
        return value

    @field_validator("client_keys", mode="before")
    @classmethod
    def _one_key(cls, value: object) -> object:
        if isinstance(value, (str, os.PathLike)):
            return [value]
        return value

    @field_validator("client_keys")
    @classmethod
    def _expand_keys(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else [os.path.expanduser(path) for path in value]

    @field_validator("known_hosts", "config")
    @classmethod
    def _expand(cls, value: str | None) -> str | None:
        if value is None or value == IGNORE_KNOWN_HOSTS:
            return value
        if not value:
            raise ValueError("must be a path (or omitted)")
        return os.path.expanduser(value)

    @field_validator("workdir_base")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"must be an absolute path, got {value!r}")
        return value.rstrip("/") or "/"

    @property
    def verify_host_keys(self) -> bool:
        """Whether host keys are checked (always, unless ``known_hosts="ignore"``)."""
        return self.known_hosts != IGNORE_KNOWN_HOSTS

    def check_files(self) -> None:
        """Check the local files this configuration names, before anything connects.

        Each key in ``client_keys`` and the ``known_hosts`` file must be a
        readable file, the known_hosts file UTF-8 text. The ``ssh_config``
        (``config``, or ``~/.ssh/config`` if it exists) and every
        file it includes must be readable UTF-8 that splits into words. Unless
        ``known_hosts`` is set, the ``ssh_config`` decides which known_hosts
        files asyncssh reads, and ``UserKnownHostsFile none`` there would
        turn verification off: it is refused wherever it stands in the file,
        inside a ``Host`` or ``Match`` block or not, whichever host it
        applies to (only ``known_hosts = "ignore"`` turns verification off).
        With ``known_hosts`` set to a file, it is refused as well if the
        ``ssh_config`` has a ``ProxyJump``: ProxyJump hosts are verified
        with the ``ssh_config``'s settings alone. A ``ProxyJump`` that is
        not ``none`` or ``[user@]host[:port]`` (comma-separated) is refused.
        ``StrictHostKeyChecking`` is not looked at: asyncssh ignores it and
        verifies regardless. Does not check that a key parses (that needs
        asyncssh; it is reported on connecting, as :class:`SSHConfigError`).

        Raises:
            SSHConfigError: A file is missing, unreadable or not valid text,
                or the ``ssh_config`` turns verification off or has a malformed
                ``ProxyJump``; the message
                names the field and the path (and the line, for the
                ``ssh_config``).
        """
        for key in self.client_keys or ():
            _read_file("client_keys", key)
        if self.known_hosts is not None and self.known_hosts != IGNORE_KNOWN_HOSTS:
            _read_text("known_hosts", self.known_hosts)
        if self.config is not None:
            path = self.config
        else:
            path = os.path.expanduser(DEFAULT_SSH_CONFIG)
            if not os.path.isfile(path):
                return
        lines = list(_ssh_config_lines(path, seen=set()))  # each file read and split
        for where, option, args in lines:
            if option == "proxyjump":
                _check_proxy_jump(where, args)
        if self.known_hosts == IGNORE_KNOWN_HOSTS:
            return
        jump = next(
            (
                where
                for where, option, args in lines
                if option == "proxyjump" and [arg.lower() for arg in args] != ["none"]
            ),
            None,
        )
        if self.known_hosts is not None and jump is None:
            return
        for where, option, args in lines:
            if option == "userknownhostsfile" and [arg.lower() for arg in args] == ["none"]:
                applies = (
                    ""
                    if self.known_hosts is None
                    else f" for the ProxyJump hosts ({jump}), which known_hosts does not cover"
                )
                raise SSHConfigError(
                    f"invalid ssh sandbox configuration: config: {where}: UserKnownHostsFile "
                    f"none turns host key verification off{applies}; set known_hosts = "
                    f'"{IGNORE_KNOWN_HOSTS}" in corral\'s config to allow that, or remove the line'
                )

    @classmethod
    def load(cls, config: object) -> Self:
        """Make a configuration from any form a sandbox spec may carry.

        Args:
            config: An ``SSHSandboxConfig``; a dict of its fields; a URL
                ``ssh://[user@]host[:port]``; or the path (``str`` or
                ``os.PathLike``) of a ``.toml``, ``.yaml``/``.yml`` or
                ``.json`` file holding the fields. Relative paths inside a
                file resolve against the file's directory.

        The local files the configuration names are checked (see
        :meth:`check_files`) each time, also for an ``SSHSandboxConfig``.

        Raises:
            ValueError: The configuration is missing or invalid; the message
                names the field (``hosts.0.port``) and the file it came from.
            SSHConfigError: A file it names is missing, unreadable or not
                text, or its ``ssh_config`` turns host key verification off
                (a ``ValueError`` naming the field and the path).
            FileNotFoundError: The file does not exist.
            TypeError: *config* is of none of these types.
        """
        loaded = cls._load(config)
        loaded.check_files()
        return loaded

    @classmethod
    def _load(cls, config: object) -> Self:
        if isinstance(config, cls):
            return config
        if config is None:
            raise ValueError(
                "the ssh sandbox needs a configuration: "
                "('ssh', {'hosts': ['user@host']}), ('ssh', 'ssh://user@host'), "
                "or ('ssh', 'path/to/config.toml')"
            )
        if isinstance(config, Mapping):
            return cls._validate(dict(config), "")
        if isinstance(config, str) and config.startswith("ssh://"):
            return cls._from_url(config)
        if isinstance(config, (str, os.PathLike)):
            return cls._from_file(Path(os.fspath(config)))
        raise TypeError(
            "the ssh sandbox configuration must be an SSHSandboxConfig, a dict, "
            f"a file path or an ssh:// URL, got {type(config).__name__}"
        )

    @classmethod
    def _validate(cls, data: object, source: str) -> Self:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc']) or '(top level)'}: {error['msg']}"
                for error in exc.errors()
            )
            raise ValueError(f"invalid ssh sandbox configuration{source}: {problems}") from None

    @classmethod
    def _from_url(cls, url: str) -> Self:
        parts = urlsplit(url)
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(f"invalid ssh sandbox URL {url!r}: expected ssh://[user@]host[:port]")
        try:
            host = _parse_host(parts.netloc)
        except ValueError as exc:
            raise ValueError(f"invalid ssh sandbox URL {url!r}: {exc}") from None
        return cls._validate({"hosts": [host]}, f" (from {url})")

    @classmethod
    def _from_file(cls, path: Path) -> Self:
        source = f" in {path}"
        what = "ssh sandbox configuration"
        try:
            data = load_config_file(path, what=what)
        except ValueError as exc:
            if path.suffix.lower() not in CONFIG_SUFFIXES:
                raise ValueError(f"{exc}, or an ssh:// URL") from None
            raise
        if not isinstance(data, dict):
            raise ValueError(
                f"invalid ssh sandbox configuration{source}: expected a table of fields"
            )
        base = path.parent
        for field in ("known_hosts", "config"):
            value = data.get(field)
            if isinstance(value, str) and value and value != IGNORE_KNOWN_HOSTS:
                data[field] = _relative_to(base, value)
        keys = data.get("client_keys")
        if isinstance(keys, str):
            data["client_keys"] = _relative_to(base, keys)
        elif isinstance(keys, list):
            data["client_keys"] = [
                _relative_to(base, key) if isinstance(key, str) else key for key in keys
            ]
        return cls._validate(data, source)


def _check_proxy_jump(where: str, args: list[str]) -> None:
    """Refuse a ``ProxyJump`` (at *where*) other than ``none`` or ``[user@]host[:port],...``."""
    if [arg.lower() for arg in args] == ["none"]:
        return
    try:
        if len(args) != 1:
            raise ValueError("one argument expected")
        for hop in args[0].split(","):
            _parse_host(hop.removeprefix("ssh://"))
    except ValueError:
        raise SSHConfigError(
            f"invalid ssh sandbox configuration: config: {where}: ProxyJump "
            f"{' '.join(args)!r} is not none or a comma-separated list of [user@]host[:port]"
        ) from None


def _relative_to(base: Path, path: str) -> str:
    expanded = os.path.expanduser(path)
    return expanded if os.path.isabs(expanded) else str(base / expanded)


def _open_error(field: str, path: str, exc: OSError) -> SSHConfigError:
    reason = exc.strerror or str(exc)
    return SSHConfigError(
        f"invalid ssh sandbox configuration: {field}: cannot read {path}: {reason}"
    )


def _read_file(field: str, path: str) -> bytes:
    """The bytes of the file *path* named by *field*, which must be a regular file.

    Opened without blocking, so that a FIFO is refused rather than waited on.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with open(fd, "rb") as file:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(errno.EINVAL, "not a regular file")
            data = file.read(_MAX_FILE + 1)
    except OSError as exc:
        raise _open_error(field, path, exc) from exc
    if len(data) > _MAX_FILE:
        raise SSHConfigError(
            f"invalid ssh sandbox configuration: {field}: {path} is larger than "
            f"{_MAX_FILE // (1024 * 1024)} MiB"
        )
    return data


def _read_text(field: str, path: str) -> str:
    """The text of the UTF-8 file *path* named by *field*."""
    data = _read_file(field, path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise SSHConfigError(
            f"invalid ssh sandbox configuration: {field}: {path} line {line} is not "
            f"UTF-8 text ({exc.reason})"
        ) from exc


def _ssh_config_lines(path: str, *, seen: set[str]) -> Iterator[tuple[str, str, list[str]]]:
    """``("path line N", option, args)`` for each line of an ``ssh_config``, Includes followed.

    Lines are split as asyncssh splits them (``Option value``,
    ``Option=value``); the option is in lower case. A file included twice
    (or by itself) is read once.
    """
    real = os.path.realpath(path)
    if real in seen:
        return
    seen.add(real)
    text = _read_text("config", path)
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path} line {number}"
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise SSHConfigError(
                f"invalid ssh sandbox configuration: config: {where}: {exc}"
            ) from exc
        if not words:
            continue
        option, _, value = words[0].partition("=")
        args = ([value] if value else []) + words[1:]
        if args and args[0].startswith("="):
            args[0] = args[0][1:]
            if not args[0]:
                del args[0]
        option = option.lower()
        yield where, option, args
        if option == "include":
            for pattern in args:
                for included in _include(pattern):
                    yield from _ssh_config_lines(included, seen=seen)


def _include(pattern: str) -> list[str]:
    """The files an ``Include`` *pattern* names (relative: under ``~/.ssh``), sorted."""
    expanded = os.path.expanduser(pattern)
    if not os.path.isabs(expanded):
        expanded = os.path.join(os.path.expanduser(_INCLUDE_BASE), expanded)
    return sorted(path for path in glob.glob(expanded) if os.path.isfile(path))
