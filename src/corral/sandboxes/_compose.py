"""Docker Compose files as typed models, for providers that take one as their config.

Container providers (Kubernetes, Podman, ...) accept the ``compose.yaml``
written for Docker and translate it. :func:`parse_compose_yaml` reads one into
a :class:`ComposeConfig`; :func:`is_compose_yaml` and :func:`is_dockerfile`
tell a provider what kind of file its ``config`` names. The models, their
field names, aliases and defaults are those of ``inspect_ai.util`` 0.3.285,
so a provider written for inspect reads the same attributes here.

Every model accepts the fields it declares and any ``x-`` extension (kept in
:attr:`~ComposeConfig.extensions`); any other key is an error, so a provider
never ignores a setting it does not know about. A file is hostile input: it
is read with ``yaml.safe_load``, and whatever is wrong with it (not YAML, not
a mapping, a wrong type, an unknown key, aliases that expand without bound)
is a :class:`ValueError` naming the file and the key.
"""

from __future__ import annotations

import os
import re
from pathlib import PurePath
from typing import Annotated, Any, ClassVar, TypeGuard

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

__all__ = [
    "COMPOSE_FILES",
    "DOCKERFILE",
    "ComposeBindOptions",
    "ComposeBuild",
    "ComposeConfig",
    "ComposeDeploy",
    "ComposeDeviceReservation",
    "ComposeHealthcheck",
    "ComposeImageOptions",
    "ComposeResourceConfig",
    "ComposeResourceReservations",
    "ComposeResources",
    "ComposeService",
    "ComposeTmpfsOptions",
    "ComposeVolumeMount",
    "ComposeVolumeOptions",
    "is_compose_yaml",
    "is_dockerfile",
    "parse_compose_yaml",
]

#: The file names Docker Compose looks for, in its order.
COMPOSE_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")

#: The name of a Dockerfile, alone (``Dockerfile``) or as a stem or suffix.
DOCKERFILE = "Dockerfile"

# Generated and variant compose files: ".compose.yaml", "web-compose.yaml".
_COMPOSE_VARIANT = re.compile(r"[-.]compose\.yaml\Z")

#: The most YAML nodes a compose file may expand to, aliases counted each time
#: they are used. Real files have hundreds; a "billion laughs" file has billions.
MAX_COMPOSE_NODES = 100_000

#: The deepest a compose file may nest; real files stay under ten.
MAX_COMPOSE_DEPTH = 64

#: How many validation problems a message lists before it stops.
_MAX_LISTED = 10


def is_compose_yaml(file: Any) -> TypeGuard[str]:
    """Whether *file* names a Docker Compose file, judging by its name alone.

    True for a string whose last component is one of :data:`COMPOSE_FILES`
    or ends in ``-compose.yaml`` or ``.compose.yaml``. Anything else,
    including a :class:`~pathlib.Path`, is False, as in ``inspect_ai`` (the
    type guard promises a ``str``). The file is not opened.

    Args:
        file: Usually a sandbox's ``config``, of any type.

    Returns:
        True when *file* is a string naming a compose file.
    """
    if not isinstance(file, str):
        return False
    name = PurePath(file).name
    return name in COMPOSE_FILES or _COMPOSE_VARIANT.search(name) is not None


def is_dockerfile(file: Any) -> TypeGuard[str]:
    """Whether *file* names a Dockerfile, judging by its name alone.

    True for a string whose last component is ``Dockerfile``, has the stem
    ``Dockerfile`` (``Dockerfile.dev``) or the suffix ``.Dockerfile``
    (``web.Dockerfile``); the match is case-sensitive, as Docker's is. Anything
    else, including a :class:`~pathlib.Path`, is False.

    Args:
        file: Usually a sandbox's ``config``, of any type.

    Returns:
        True when *file* is a string naming a Dockerfile.
    """
    if not isinstance(file, str):
        return False
    path = PurePath(file)
    return path.stem == DOCKERFILE or path.suffix == f".{DOCKERFILE}"


def _cpus_as_text(value: Any) -> Any:
    """``cpus: 1`` is as good as ``cpus: "1"``."""
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def _restart_as_text(value: Any) -> Any:
    """YAML 1.1 reads a bare ``no`` as ``False``; Compose means the policy ``"no"``."""
    return "no" if value is False else value


def _environment_values_as_text(value: Any) -> Any:
    """``PORT: 8080`` in an environment mapping is the string ``"8080"``, as in Compose."""
    if isinstance(value, dict):
        return {
            key: str(item) if isinstance(item, int | float) and not isinstance(item, bool) else item
            for key, item in value.items()
        }
    return value


class _ComposeModel(BaseModel):
    """Declared fields plus ``x-`` extensions; any other key is an error."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, defer_build=True)

    #: Keys accepted and dropped, for settings Compose itself ignores.
    _obsolete_keys: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _only_extensions(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data  # the model's own validation names the wrong type
        known = set(cls.model_fields)
        known.update(info.alias for info in cls.model_fields.values() if info.alias)
        unknown = [
            key
            for key in data
            if key not in known and not (isinstance(key, str) and key.startswith("x-"))
        ]
        unknown = [key for key in unknown if key not in cls._obsolete_keys]
        if unknown:
            listed = ", ".join(repr(key) for key in unknown)
            raise ValueError(
                f"unknown field{'s' if len(unknown) > 1 else ''} {listed}; "
                f"a {cls.__name__} takes only its own fields and 'x-' extensions"
            )
        if cls._obsolete_keys & data.keys():
            data = {key: value for key, value in data.items() if key not in cls._obsolete_keys}
        return data

    @property
    def extensions(self) -> dict[str, Any]:
        """The ``x-`` extension fields of this mapping, by their full key (``"x-k8s"``)."""
        return dict(self.model_extra or {})


class ComposeHealthcheck(_ComposeModel):
    """A service's ``healthcheck``.

    Attributes:
        test: The check, as ``["CMD", ...]``, ``["CMD-SHELL", "..."]`` or a shell string.
        interval: Time between checks (``"30s"``).
        timeout: How long one check may take.
        start_period: Grace time after start before failures count.
        start_interval: Time between checks during the start period.
        retries: Consecutive failures that make the service unhealthy.
    """

    test: list[str] | str | None = None
    interval: str | None = None
    timeout: str | None = None
    start_period: str | None = None
    start_interval: str | None = None
    retries: int | None = None


class ComposeBuild(_ComposeModel):
    """A service's ``build`` in its long form (the short form is the context as a string).

    Attributes:
        context: The build context directory, as written (relative paths are
            relative to the compose file; nothing is resolved or checked).
        dockerfile: The Dockerfile, relative to the context.
        no_cache: Build without the builder's cache.
        pull: Pull a newer base image first.
    """

    context: str | None = None
    dockerfile: str | None = None
    no_cache: bool | None = None
    pull: bool | None = None


class ComposeBindOptions(_ComposeModel):
    """``bind:`` options of a long-form volume mount."""

    propagation: str | None = None
    create_host_path: bool | None = None
    recursive: str | None = None
    selinux: str | None = None


class ComposeVolumeOptions(_ComposeModel):
    """``volume:`` options of a long-form volume mount."""

    nocopy: bool | None = None
    subpath: str | None = None


class ComposeTmpfsOptions(_ComposeModel):
    """``tmpfs:`` options of a long-form volume mount (sizes and modes as text or numbers)."""

    size: str | int | None = None
    mode: str | int | None = None


class ComposeImageOptions(_ComposeModel):
    """``image:`` options of a long-form volume mount."""

    subpath: str | None = None


class ComposeVolumeMount(_ComposeModel):
    """A volume mount in its long form (the short form is a ``"source:target"`` string).

    Attributes:
        type: ``bind``, ``volume``, ``tmpfs``, ``image``, ...
        source: The host path, volume name or image.
        target: Where it appears in the container.
        read_only: Mount it read-only.
        consistency: Platform-specific consistency requirement.
        bind: Options of a ``bind`` mount.
        volume: Options of a ``volume`` mount.
        tmpfs: Options of a ``tmpfs`` mount.
        image: Options of an ``image`` mount.
    """

    type: str | None = None
    source: str | None = None
    target: str | None = None
    read_only: bool | None = None
    consistency: str | None = None
    bind: ComposeBindOptions | None = None
    volume: ComposeVolumeOptions | None = None
    tmpfs: ComposeTmpfsOptions | None = None
    image: ComposeImageOptions | None = None


class ComposeResources(_ComposeModel):
    """``deploy.resources.limits``: ``cpus`` (numbers become text) and ``memory``."""

    cpus: Annotated[str | None, BeforeValidator(_cpus_as_text)] = None
    memory: str | None = None


class ComposeDeviceReservation(_ComposeModel):
    """One device (a GPU, ...) a service reserves; ``count`` may be ``"all"``."""

    driver: str | None = None
    count: int | str | None = None
    device_ids: list[str] | None = None
    capabilities: list[str] | None = None
    options: dict[str, str] | None = None


class ComposeResourceReservations(_ComposeModel):
    """``deploy.resources.reservations``: CPUs, memory and devices."""

    cpus: Annotated[str | None, BeforeValidator(_cpus_as_text)] = None
    memory: str | None = None
    devices: list[ComposeDeviceReservation] | None = None


class ComposeResourceConfig(_ComposeModel):
    """``deploy.resources``: ``limits`` and ``reservations``."""

    limits: ComposeResources | None = None
    reservations: ComposeResourceReservations | None = None


class ComposeDeploy(_ComposeModel):
    """A service's ``deploy``; only ``resources`` is modelled."""

    resources: ComposeResourceConfig | None = None


class ComposeService(_ComposeModel):
    """One entry of ``services``. Every field is optional and defaults to ``None``.

    The fields are the Compose keys of the same name; the ones providers
    read most are ``image``, ``build``, ``command``, ``entrypoint``,
    ``working_dir``, ``environment``, ``user``, ``healthcheck``, ``volumes``,
    ``ports``, ``networks`` and ``deploy``. ``restart: no`` (which YAML
    reads as ``False``) is the policy ``"no"``; numbers in an
    ``environment`` mapping become text.

    Attributes:
        x_default: ``x-default: true`` marks the service providers treat as
            the default one; set it as ``x_default=`` in Python.
    """

    image: str | None = None
    build: ComposeBuild | str | None = None
    command: list[str] | str | None = None
    entrypoint: list[str] | str | None = None
    working_dir: str | None = None
    environment: Annotated[
        list[str] | dict[str, str | None] | None, BeforeValidator(_environment_values_as_text)
    ] = None
    env_file: list[str] | str | None = None
    user: str | None = None
    healthcheck: ComposeHealthcheck | None = None
    ports: list[str | int] | None = None
    expose: list[str | int] | None = None
    volumes: list[str | ComposeVolumeMount] | None = None
    devices: list[str] | None = None
    networks: list[str] | dict[str, Any] | None = None
    network_mode: str | None = None
    hostname: str | None = None
    runtime: str | None = None
    init: bool | None = None
    privileged: bool | None = None
    read_only: bool | None = None
    shm_size: str | int | None = None
    ulimits: dict[str, int | dict[str, int]] | None = None
    pids_limit: int | str | None = None
    cgroup: str | None = None
    stop_grace_period: str | None = None
    depends_on: list[str] | dict[str, Any] | None = None
    pull_policy: str | None = None
    platform: str | None = None
    extra_hosts: list[str] | dict[str, str] | None = None
    cap_add: list[str] | None = None
    cap_drop: list[str] | None = None
    security_opt: list[str] | None = None
    tmpfs: str | list[str] | None = None
    restart: Annotated[str | None, BeforeValidator(_restart_as_text)] = None
    stdin_open: bool | None = None
    tty: bool | None = None
    deploy: ComposeDeploy | None = None
    mem_limit: str | None = None
    mem_reservation: str | None = None
    memswap_limit: str | int | None = None
    cpus: float | None = None
    x_default: bool | None = Field(default=None, alias="x-default")


class ComposeConfig(_ComposeModel):
    """A whole compose file: its ``services`` and the top-level ``volumes`` and ``networks``.

    Two configs are equal when their contents are, whatever the order of
    their keys, and equal configs hash equal, so providers can key caches on
    them. The top-level ``version``
    key, obsolete in Compose, is accepted and dropped.

    Attributes:
        services: The services by name (required; may be empty).
        volumes: Top-level volume definitions, unvalidated.
        networks: Top-level network definitions, unvalidated.
    """

    _obsolete_keys: ClassVar[frozenset[str]] = frozenset({"version"})

    services: dict[str, ComposeService]
    volumes: dict[str, Any] | None = None
    networks: dict[str, Any] | None = None

    def __hash__(self) -> int:
        # Not the JSON text: equal configs may list their keys in another order.
        return hash(_frozen(self.model_dump()))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ComposeConfig):
            return NotImplemented
        return self.model_dump() == other.model_dump()


def _frozen(value: Any) -> Any:
    """A hashable equivalent of *value*: equal for values that compare equal."""
    if isinstance(value, dict):
        return frozenset((key, _frozen(item)) for key, item in value.items())
    if isinstance(value, list | tuple):
        return tuple(_frozen(item) for item in value)
    if isinstance(value, set):
        return frozenset(_frozen(item) for item in value)
    return value


def parse_compose_yaml(
    file: str | os.PathLike[str], *, multiple_services: bool = True
) -> ComposeConfig:
    """Read the Docker Compose file *file* into a :class:`ComposeConfig`.

    The file is parsed with ``yaml.safe_load`` (so YAML 1.1 rules apply:
    quote ports like ``"22:22"``, which YAML 1.1 reads as the number 1342) and
    validated against the models; relative paths in it are kept as written.
    Not a checkpoint: it reads a small local file synchronously.

    Args:
        file: Path of the compose file.
        multiple_services: Whether the caller supports more than one service;
            with ``False``, a file with several services is an error.

    Returns:
        The parsed configuration.

    Raises:
        TypeError: *file* is not a string or path.
        FileNotFoundError: *file* does not exist.
        IsADirectoryError: *file* is a directory.
        PermissionError: *file* cannot be read.
        ValueError: The file is not valid YAML, not a mapping, has no
            ``services``, nests or expands too far, fails validation (the
            message names the file and each offending key), or has several
            services when *multiple_services* is ``False``.
    """
    if not isinstance(file, str | os.PathLike):
        raise TypeError(f"file must be a path to a compose file, got {type(file).__name__}")
    name = os.fspath(file)
    try:
        with open(name, "rb") as stream:
            content = stream.read()
    except FileNotFoundError as exc:
        raise FileNotFoundError(exc.errno, "compose file not found", name) from None

    raw = _load_yaml(content, name)
    if not isinstance(raw, dict):
        kind = "empty" if raw is None else f"a {type(raw).__name__}"
        raise ValueError(
            f"compose file {name!r} must be a mapping with a 'services' key, but it is {kind}"
        )
    if "services" not in raw:
        raise ValueError(f"compose file {name!r} has no 'services' key")
    _check_expansion(raw, name)
    try:
        config = ComposeConfig.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(_describe(exc, raw, name)) from None

    if not multiple_services and len(config.services) > 1:
        raise ValueError(
            f"compose file {name!r} has {len(config.services)} services "
            f"({', '.join(config.services)}), but this provider supports only one"
        )
    return config


def _load_yaml(content: bytes, name: str) -> object:
    """Parse *content* with ``yaml.safe_load``, turning every failure into a ValueError."""
    import yaml  # imported here: ``import corral.util`` does not pull in PyYAML

    try:
        return yaml.safe_load(content)
    except yaml.YAMLError as exc:
        where, problem = "", str(exc)
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
            problem = getattr(exc, "problem", None) or problem
        elif isinstance(exc, yaml.reader.ReaderError):  # undecodable bytes
            where, problem = f" at byte {exc.position}", str(exc.reason)
        raise ValueError(f"compose file {name!r} is not valid YAML{where}: {problem}") from None
    except RecursionError:
        raise ValueError(f"compose file {name!r} nests too deeply to parse") from None


def _check_expansion(raw: dict[Any, Any], name: str) -> None:
    """Refuse YAML whose aliases recurse, or expand past the node or depth budget.

    ``safe_load`` shares one object for each use of an alias, so a small file
    can stand for an exponential tree (and a recursive alias for an infinite
    one) that validation and ``model_dump`` would walk in full.
    """
    count = 0
    # (node, path to it, ids of the containers above it, depth)
    stack: list[tuple[Any, str, frozenset[int], int]] = [(raw, "", frozenset(), 0)]
    while stack:
        node, path, above, depth = stack.pop()
        count += 1
        if count > MAX_COMPOSE_NODES:
            raise ValueError(
                f"compose file {name!r} expands to more than {MAX_COMPOSE_NODES:,} values "
                "(YAML aliases are counted each time they are used)"
            )
        if not isinstance(node, dict | list):
            continue
        where = path or "the top level"
        if id(node) in above:
            raise ValueError(f"compose file {name!r} refers to itself at {where} (a YAML alias)")
        if depth >= MAX_COMPOSE_DEPTH:
            raise ValueError(
                f"compose file {name!r} nests more than {MAX_COMPOSE_DEPTH} levels deep at {where}"
            )
        inner = above | {id(node)}
        if isinstance(node, list):
            children = [(_join(path, i, index=True), child) for i, child in enumerate(node)]
        else:
            children = [(_join(path, key, index=False), child) for key, child in node.items()]
        stack.extend((child, at, inner, depth + 1) for at, child in children)


def _join(path: str, key: object, *, index: bool) -> str:
    """``services.web`` for a key, ``volumes[0]`` for a list index."""
    if index:
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def _describe(exc: ValidationError, raw: dict[Any, Any], name: str) -> str:
    """One line per offending key, named as it is written in the file.

    A value that fits none of a union's members gets one error per member.
    The line keeps the member that says most: a complaint about a key inside
    the value (``volumes[0].target``) or about the value's own keys
    ("unknown field") beats "not a string"; otherwise the members' messages
    are joined.
    """
    problems: dict[str, list[str]] = {}
    specific: dict[str, list[str]] = {}
    got: dict[str, str] = {}
    for error in exc.errors(include_url=False):
        where = _input_path(raw, error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "value_error":
            specific.setdefault(where, []).append(message)
        elif "input" in error:
            got[where] = f" (got {_shorten(error['input'])})"
        messages = problems.setdefault(where, [])
        if message not in messages:
            messages.append(message)
    lines = []
    for where, messages in problems.items():
        if any(other.startswith((f"{where}.", f"{where}[")) for other in problems):
            continue  # a deeper problem inside this value says more
        if where in specific:
            lines.append(f"  {where}: {'; '.join(specific[where])}")
        else:
            lines.append(f"  {where}: {'; or: '.join(messages)}{got.get(where, '')}")
    shown = lines[:_MAX_LISTED]
    if len(lines) > _MAX_LISTED:
        shown.append(f"  ... and {len(lines) - _MAX_LISTED} more")
    plural = "s" if len(lines) > 1 else ""
    return f"compose file {name!r} is invalid ({len(lines)} problem{plural}):\n" + "\n".join(shown)


def _input_path(raw: object, loc: tuple[int | str, ...]) -> str:
    """The path of *loc* in the input, without the union members pydantic adds to it.

    pydantic's location of a problem inside ``str | ComposeBuild`` has the
    member's name in it (``build.ComposeBuild.context``); walking the input
    along the location keeps only the keys that are really there.
    """
    path = ""
    node = raw
    for part in loc:
        if part == "[key]":
            path += " (the key)"
            continue
        if isinstance(node, dict) and part in node:
            path = _join(path, part, index=False)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            path = _join(path, part, index=True)
            node = node[part]
        # anything else is a union member's tag, not a key of the file
    return path or "the top level"


def _shorten(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
