"""Configuration of the ``"ssh"`` sandbox: which hosts, which keys, which checks.

:class:`SSHSandboxConfig` is what the provider works from. Users may give it
as the model itself, a dict, the path of a TOML, YAML or JSON file, or a URL
``ssh://user@host:port``; :meth:`SSHSandboxConfig.load` accepts all of them
and names what is wrong with a bad one. This module does not import asyncssh,
so configurations can be checked without it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..._core._config_files import CONFIG_SUFFIXES, load_config_file

__all__ = ["SSHHostConfig", "SSHSandboxConfig"]

#: ``known_hosts`` value that turns host key verification off.
IGNORE_KNOWN_HOSTS = "ignore"


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
        host: Host name or address.
        port: SSH port.
        username: Login name; ``None`` lets the SSH configuration (or the
            local user name) decide, as ``ssh`` does.
        max_sandboxes: Samples this host may hold at once; ``None``: no limit
            of its own (samples still go to the least loaded host).
        max_sessions: Channels opened at once on one connection: the
            server's ``MaxSessions`` (OpenSSH's default is 10). More
            connections are opened when more are needed.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    host: str = Field(min_length=1)
    port: int = Field(default=22, ge=1, le=65535)
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
        """``user@host:port`` (or ``host:port``), as messages name the host."""
        prefix = f"{self.username}@" if self.username else ""
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

    @classmethod
    def load(cls, config: object) -> Self:
        """Make a configuration from any form a sandbox spec may carry.

        Args:
            config: An ``SSHSandboxConfig``; a dict of its fields; a URL
                ``ssh://[user@]host[:port]``; or the path (``str`` or
                ``os.PathLike``) of a ``.toml``, ``.yaml``/``.yml`` or
                ``.json`` file holding the fields. Relative paths inside a
                file resolve against the file's directory.

        Raises:
            ValueError: The configuration is missing or invalid; the message
                names the field (``hosts.0.port``) and the file it came from.
            FileNotFoundError: The file does not exist.
            TypeError: *config* is of none of these types.
        """
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


def _relative_to(base: Path, path: str) -> str:
    expanded = os.path.expanduser(path)
    return expanded if os.path.isabs(expanded) else str(base / expanded)
