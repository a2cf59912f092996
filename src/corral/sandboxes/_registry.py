"""The sandbox registry: sandbox type names mapped to provider classes.

A name maps to one of three things, and only a class is ever imported
eagerly:

* a :class:`~corral.sandboxes.SandboxEnvironment` subclass (``@sandboxenv``
  on a class);
* a zero-argument function returning the class (``@sandboxenv`` on a
  function), called the first time the type is used;
* a dotted path, ``"package.module:Class"`` (:func:`register_sandbox`, the
  built-in ``"local"``, and entry points), imported the first time the type
  is used, so that a provider whose dependencies are not installed costs
  nothing until someone asks for it, and then fails with an error naming the
  missing package.

Third-party packages register providers without being imported, through
the entry-point group ``corral.sandboxes``: each entry point's name is the
sandbox type and its value the class (``mysandbox = "my_pkg.sandbox:MySandbox"``).
Entry points are read once, the first time a lookup misses; a name
registered in code wins over an entry point of the same name. A provider
ported from ``inspect_ai`` by changing its import keeps its entry point in
inspect's group, ``inspect_ai``, whose values are modules that register
their types with ``@sandboxenv`` when imported: if a lookup still misses,
those modules are imported (once; one that fails is skipped with a warning).

Registering a name again replaces the entry quietly when it is the same
provider (the same class, or a class defined again at the same
``module:qualname``); giving a taken name to a different provider needs
``clobber=True``. :func:`registered_sandboxes` returns a read-only view of
the table.

The registry also turns ``dict`` configs into providers' models
(:func:`provider_config`, :func:`spec_config`): a spec names its provider by
type, so only the registry can tell which model a dict was dumped from.
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading
from collections.abc import Callable, Iterable
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from pydantic import BaseModel, ValidationError

from ._compose import ComposeConfig
from ._environment import SandboxEnvironment

if TYPE_CHECKING:
    from collections.abc import Mapping
    from importlib.metadata import EntryPoint

__all__ = [
    "ENTRY_POINT_GROUP",
    "provider_config",
    "register_sandbox",
    "registered_sandboxes",
    "sandbox_class",
    "sandboxenv",
    "spec_config",
]

_logger = logging.getLogger("corral.sandbox")

#: The entry-point group third-party providers register under.
ENTRY_POINT_GROUP = "corral.sandboxes"
#: inspect_ai's group: modules that register their providers when imported.
INSPECT_ENTRY_POINT_GROUP = "inspect_ai"

#: What a name maps to: a class, a dotted path, or a function returning the class.
RegistryEntry: TypeAlias = type[SandboxEnvironment] | str | Callable[[], type[SandboxEnvironment]]

_T = TypeVar("_T", bound=Callable[..., Any])

_lock = threading.RLock()
_table: dict[str, RegistryEntry] = {
    "local": "corral.sandboxes._local:LocalSandboxEnvironment",
    "ssh": "corral.sandboxes._ssh._environment:SSHSandboxEnvironment",
}
#: Extras to suggest when a registered provider's import fails (type -> extra).
_extras: dict[str, str] = {"ssh": "ssh"}
_entry_points_loaded = False
_inspect_entry_points_loaded = False


def _check_name(name: object) -> str:
    if not isinstance(name, str):
        raise TypeError(f"name must be a str (the sandbox type), got {type(name).__name__}")
    if not name.strip():
        raise ValueError("name must be a non-empty sandbox type name")
    return name


def _path_of(obj: object) -> str | None:
    """``"module:Qualname"`` of a class or function, to compare with a dotted path."""
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if isinstance(module, str) and isinstance(qualname, str):
        return f"{module}:{qualname}"
    return None


def _same(existing: RegistryEntry, new: RegistryEntry) -> bool:
    """Whether *new* is the same provider as *existing*, so that it may replace it quietly.

    The same object, the same dotted path, or a class (or factory) defined
    at the same ``module:qualname``: a module decorating its own class with
    the name it is lazily registered under, or a class defined again (a
    notebook cell run twice, a test module imported under two backends).
    """
    if existing is new or existing == new:
        return True
    if isinstance(existing, str) and _loaded(existing) is new:
        return True
    old = _normalise(existing) if isinstance(existing, str) else _path_of(existing)
    current = _normalise(new) if isinstance(new, str) else _path_of(new)
    return old is not None and old == current


def _loaded(path: str) -> object:
    """What the dotted *path* names, if its module is imported already (nothing is imported)."""
    module_name, _, attr = _normalise(path).partition(":")
    obj: object = sys.modules.get(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part, None)
    return obj


def _normalise(path: str) -> str:
    if ":" in path:
        return path
    module, _, attr = path.rpartition(".")
    return f"{module}:{attr}"


def _register(name: str, entry: RegistryEntry, clobber: bool) -> None:
    with _lock:
        existing = _table.get(name)
        if existing is not None and not clobber and not _same(existing, entry):
            raise ValueError(
                f"Sandbox type {name!r} is already registered (to {_describe(existing)}); "
                "pass clobber=True to replace it."
            )
        _table[name] = entry


def _describe(entry: RegistryEntry) -> str:
    if isinstance(entry, str):
        return repr(entry)
    return _path_of(entry) or repr(entry)


def sandboxenv(name: str, *, clobber: bool = False) -> Callable[[_T], _T]:
    """Register a sandbox provider under the type *name*.

    Decorate the provider class, or a zero-argument function that imports and
    returns it (called the first time the type is used, so heavy imports wait
    until then)::

        @sandboxenv("podman")
        class PodmanSandboxEnvironment(SandboxEnvironment): ...

        @sandboxenv("cloud")
        def cloud() -> type[SandboxEnvironment]:
            from .cloud import CloudSandboxEnvironment
            return CloudSandboxEnvironment

    The decorated object is returned unchanged.

    Args:
        name: The sandbox type, as written in a ``SandboxEnvironmentSpec``.
        clobber: Replace an existing registration of *name*.

    Raises:
        TypeError: *name* is not a ``str``; the decorated object is a class
            that is not a ``SandboxEnvironment`` subclass, or not callable.
        ValueError: *name* is empty, or already registered to a different
            provider and *clobber* is false (the same class defined again,
            at the same ``module:qualname``, replaces the old one).
    """
    _check_name(name)

    def decorate(obj: _T) -> _T:
        if isinstance(obj, type):
            if not issubclass(obj, SandboxEnvironment):
                raise TypeError(
                    f"@sandboxenv({name!r}) decorates {obj.__qualname__}, "
                    "which is not a SandboxEnvironment subclass"
                )
        elif not callable(obj):
            raise TypeError(
                f"@sandboxenv({name!r}) decorates a class or a function returning one, "
                f"not {type(obj).__name__}"
            )
        _register(name, obj, clobber)
        return obj

    return decorate


def register_sandbox(
    name: str,
    cls: str | type[SandboxEnvironment],
    *,
    clobber: bool = False,
    extra: str | None = None,
) -> None:
    """Register the provider *cls* under the type *name*, usually as a dotted path.

    ``register_sandbox("ssh", "corral.sandboxes._ssh:SSHSandboxEnvironment",
    extra="ssh")`` imports nothing now; the module is imported the first time
    the ``ssh`` type is used.

    Args:
        name: The sandbox type.
        cls: ``"package.module:Class"`` (or ``"package.module.Class"``), or the
            class itself.
        clobber: Replace an existing registration of *name*.
        extra: The ``corral`` extra that installs the provider's dependencies,
            named in the error when importing it fails.

    Raises:
        TypeError: *name* or *cls* has the wrong type, or *cls* is a class
            that is not a ``SandboxEnvironment`` subclass.
        ValueError: *name* is empty, *cls* is not a dotted path, or *name*
            is already registered to something else and *clobber* is false.
    """
    _check_name(name)
    if isinstance(cls, str):
        module, _, attr = _normalise(cls).partition(":")
        if not module or not attr or not all(p.isidentifier() for p in attr.split(".")):
            raise ValueError(f"cls must be a dotted path like 'package.module:Class', got {cls!r}")
    elif not (isinstance(cls, type) and issubclass(cls, SandboxEnvironment)):
        raise TypeError(f"cls must be a dotted path or a SandboxEnvironment subclass, got {cls!r}")
    _register(name, cls, clobber)
    if extra is not None:
        _extras[name] = extra


def registered_sandboxes() -> Mapping[str, RegistryEntry]:
    """A read-only view of the registry: type name -> class, dotted path or factory.

    The view is live: later registrations show through it. Entry points show
    up once they have been read (the first lookup that misses).
    """
    return MappingProxyType(_table)


def _entry_points() -> Iterable[EntryPoint]:
    """The installed entry points of :data:`ENTRY_POINT_GROUP` (patched by tests)."""
    import importlib.metadata

    return importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)


def _inspect_entry_points() -> Iterable[EntryPoint]:
    """The installed entry points of :data:`INSPECT_ENTRY_POINT_GROUP` (patched by tests)."""
    import importlib.metadata

    return importlib.metadata.entry_points(group=INSPECT_ENTRY_POINT_GROUP)


def _load_inspect_entry_points() -> None:
    """Import the modules of inspect_ai's entry-point group, once per process.

    Each registers its providers (``@sandboxenv``) as it is imported. One
    that fails to import (say, a provider not ported, without inspect_ai
    installed) is skipped, with a warning naming it.
    """
    global _inspect_entry_points_loaded
    with _lock:
        if _inspect_entry_points_loaded:
            return
        _inspect_entry_points_loaded = True
        found = list(_inspect_entry_points())
    for ep in found:  # outside the lock: the imports register through it
        try:
            ep.load()
        except Exception as exc:
            _logger.warning(
                "could not load %r from the %r entry-point group: %s: %s",
                ep.value,
                INSPECT_ENTRY_POINT_GROUP,
                type(exc).__name__,
                exc,
            )


def _load_entry_points() -> None:
    """Add every entry point of the group to the table, lazily, once per process."""
    global _entry_points_loaded
    with _lock:
        if _entry_points_loaded:
            return
        _entry_points_loaded = True
        for ep in _entry_points():
            if ep.name and ep.name not in _table:
                _table[ep.name] = ep.value


def _import(name: str, path: str) -> object:
    module_name, _, attr = _normalise(path).partition(":")
    try:
        obj: object = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except ImportError as exc:
        raise _import_error(name, path, exc) from exc
    except AttributeError as exc:
        raise ImportError(
            f"Sandbox type {name!r} is registered as {path!r}, "
            f"but {module_name!r} has no attribute {attr!r}."
        ) from exc
    return obj


def _import_error(name: str, what: str, exc: ImportError) -> ImportError:
    missing = exc.name or str(exc)
    message = (
        f"Sandbox type {name!r} ({what}) needs the package {missing!r}, "
        f"which could not be imported: {exc}."
    )
    extra = _extras.get(name)
    if extra is not None:
        message += f" Install it with: pip install 'corral[{extra}]'"
    else:
        message += f" Install the package {missing!r} to use this sandbox."
    return ImportError(message, name=exc.name)


def _resolve(name: str, entry: RegistryEntry) -> type[SandboxEnvironment]:
    if isinstance(entry, str):
        obj = _import(name, entry)
    elif isinstance(entry, type):
        obj = entry
    else:
        try:
            obj = entry()
        except ImportError as exc:
            raise _import_error(name, _describe(entry), exc) from exc
    if not (isinstance(obj, type) and issubclass(obj, SandboxEnvironment)):
        raise TypeError(
            f"Sandbox type {name!r} resolved to {obj!r}, "
            "which is not a SandboxEnvironment subclass."
        )
    return obj


def sandbox_class(name: str) -> type[SandboxEnvironment]:
    """Return the provider class registered as the sandbox type *name*.

    A lazily registered provider is imported now (and the class remembered).
    On a miss, the entry points of ``corral.sandboxes`` are read (once) and
    the lookup is retried; then the modules of ``inspect_ai``'s group are
    imported (once) and it is tried again.

    Raises:
        TypeError: *name* is not a ``str``, or the registration does not
            resolve to a ``SandboxEnvironment`` subclass.
        ValueError: No provider is registered as *name*; the message lists the
            known types.
        ImportError: The provider could not be imported; the message names
            the missing package (and the extra to install, when known).
    """
    _check_name(name)
    entry = _table.get(name)
    if entry is None:
        _load_entry_points()
        entry = _table.get(name)
    if entry is None:
        _load_inspect_entry_points()
        entry = _table.get(name)
    if entry is None:
        known = ", ".join(repr(n) for n in sorted(_table)) or "none"
        raise ValueError(
            f"Sandbox type {name!r} is not recognized. Known types: {known}. "
            "Register it with @sandboxenv, or install the package that provides it "
            f"(entry-point group {ENTRY_POINT_GROUP!r} or {INSPECT_ENTRY_POINT_GROUP!r})."
        )
    cls = _resolve(name, entry)
    if cls is not entry:
        with _lock:
            if _table.get(name) is entry:
                _table[name] = cls
    return cls


def _has_model(provider: type[SandboxEnvironment]) -> bool:
    """Whether *provider* overrides ``config_deserialize`` (the base one only refuses)."""
    own = getattr(provider.config_deserialize, "__func__", None)
    return own is not SandboxEnvironment.config_deserialize.__func__  # type: ignore[attr-defined]


def provider_config(provider: type[SandboxEnvironment], config: object) -> Any:
    """*config* as *provider* takes it: a non-empty ``dict`` becomes the provider's model.

    For a docker-compatible provider (``is_docker_compatible()``), a dict
    that is a valid compose file becomes a ``ComposeConfig``; otherwise a
    provider that overrides ``config_deserialize`` turns it into its model.
    Anything else is returned as it is: ``None``, a file name, a model, a
    dict for a provider without a model of its own.

    Raises:
        TypeError: ``config_deserialize`` returned something that is not a
            pydantic model (the message names the provider).
        Exception: Whatever the provider's ``config_deserialize`` raised
            (typically ``ValueError`` or ``ValidationError`` naming the field).
    """
    if not isinstance(config, dict) or not config:
        return config
    if provider.is_docker_compatible():
        try:
            return ComposeConfig.model_validate(config)
        except ValidationError:
            pass  # not a compose file: the provider's own model, if any
    if not _has_model(provider):
        return config
    model = provider.config_deserialize(config)
    if not isinstance(model, BaseModel):
        raise TypeError(
            f"{provider.__name__}.config_deserialize() must return a pydantic model, "
            f"got {type(model).__name__}"
        )
    return model


def spec_config(name: str, config: dict[str, Any]) -> Any:
    """The config a ``SandboxEnvironmentSpec`` of type *name* keeps for the dict *config*.

    The provider's model when the provider is registered and takes the
    dict (see :func:`provider_config`); otherwise the dict itself, so that a
    spec always loads (a log written with a provider that is not installed
    here, a provider registered after the spec is made). A refused dict is
    refused again, with the provider's own error, when the config reaches
    the provider in ``task_init``.
    """
    try:
        provider = sandbox_class(name)
    except (ValueError, ImportError, TypeError) as exc:
        _logger.debug("sandbox config of type %r kept as a dict: %s", name, exc)
        return config
    try:
        return provider_config(provider, config)
    except Exception as exc:
        _logger.debug("sandbox config of type %r kept as a dict: %r", name, exc)
        return config
