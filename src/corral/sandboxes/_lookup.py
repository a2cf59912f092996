"""Finding the running sample's sandboxes: :func:`sandbox` and :func:`sandbox_with`.

The sample lifecycle installs the environments of a sample with
:func:`sandbox_environments` (a context manager setting three context
variables); everything that runs inside it, including tasks started in its
nurseries, sees them, and two samples running at once each see their own.

Unlike ``inspect_ai``, a name that is not one of the sample's environments is
always an error, even when the sample has a single environment.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING

import anyio.lowlevel

from ._errors import OutputLimitExceededError, SandboxUnavailableError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ._environment import SandboxEnvironment

__all__ = ["sandbox", "sandbox_default", "sandbox_environments", "sandbox_with"]

_environments: ContextVar[dict[str, SandboxEnvironment] | None] = ContextVar(
    "corral.sandbox.environments", default=None
)
_default_name: ContextVar[str | None] = ContextVar("corral.sandbox.default", default=None)
#: Per sample: ``(name, file, on_path)`` -> the environment found holding the file.
_with_cache: ContextVar[dict[tuple[str | None, str, bool], SandboxEnvironment] | None] = ContextVar(
    "corral.sandbox.with_cache", default=None
)

_NO_SANDBOX = (
    "No sandbox environment has been provided for the current sample or task. "
    "Please specify a sandbox for the sample (sample(..., sandbox=SPEC)) "
    "or a default sandbox for the task (task(..., sandbox=SPEC))."
)


@contextlib.contextmanager
def sandbox_environments(envs: Mapping[str, SandboxEnvironment]) -> Iterator[None]:
    """Make *envs* the current sample's environments inside the block.

    For the sample lifecycle: *envs* are the (already wrapped) environments
    returned by ``sample_init``, the first being the default. The
    ``sandbox_with`` cache starts empty. The previous values are restored on
    exit. Not a checkpoint.

    Raises:
        TypeError: *envs* is not a mapping.
        ValueError: *envs* is empty.
    """
    if not isinstance(envs, Mapping):
        raise TypeError(f"envs must be a mapping of name -> environment, got {type(envs).__name__}")
    if not envs:
        raise ValueError("envs must hold at least one environment (the first is the default)")
    tokens = (
        _environments.set(dict(envs)),
        _default_name.set(next(iter(envs))),
        _with_cache.set({}),
    )
    try:
        yield
    finally:
        _with_cache.reset(tokens[2])
        _default_name.reset(tokens[1])
        _environments.reset(tokens[0])


def _current() -> dict[str, SandboxEnvironment]:
    envs = _environments.get()
    if not envs:
        raise ProcessLookupError(_NO_SANDBOX)
    return envs


def _unknown(name: str, envs: dict[str, SandboxEnvironment]) -> ValueError:
    known = ", ".join(repr(n) for n in envs)
    return ValueError(
        f"Sandbox environment {name!r} is not one of this sample's environments: {known}."
    )


def _lookup(envs: dict[str, SandboxEnvironment], name: str | None) -> SandboxEnvironment:
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a str or None, got {type(name).__name__}")
    if name is None or name == "default":
        default = _default_name.get()
        if default is None or default not in envs:  # pragma: no cover - set together
            raise _unknown(str(default), envs)
        return envs[default]
    try:
        return envs[name]
    except KeyError:
        raise _unknown(name, envs) from None


def sandbox(name: str | None = None) -> SandboxEnvironment:
    """Return a sandbox environment of the running sample.

    Not a checkpoint.

    Args:
        name: The environment's name; ``None`` or ``"default"`` for the
            sample's default environment (the first one its provider
            returned, unless :func:`sandbox_default` says otherwise).

    Raises:
        ProcessLookupError: The running sample (or task) has no sandbox, or
            the caller is not inside a sample.
        ValueError: *name* is not one of the sample's environments (even when
            it has only one); the message lists those it has.
        TypeError: *name* is not a ``str``.
    """
    return _lookup(_current(), name)


@contextlib.contextmanager
def sandbox_default(name: str) -> Iterator[None]:
    """Make the environment *name* the default inside the block.

    ``sandbox()`` and ``sandbox("default")`` return it until the block exits.
    Not a checkpoint.

    Raises:
        ProcessLookupError: There is no sandbox in this context.
        ValueError: *name* is not one of the sample's environments.
        TypeError: *name* is not a ``str``.
    """
    envs = _current()
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    if name not in envs:
        raise _unknown(name, envs)
    token = _default_name.set(name)
    try:
        yield
    finally:
        _default_name.reset(token)


async def sandbox_with(
    file: str, on_path: bool = False, *, name: str | None = None
) -> SandboxEnvironment | None:
    """Return the first of the sample's environments that holds *file*.

    Environments are tried in order (the default first, as the provider
    returned them). An environment holds *file* when ``test -r FILE``
    succeeds in it or, failing that, when ``read_file`` can read it (a file
    over the read limit counts as found). With *on_path*, *file* is a program
    name and an environment holds it when ``which FILE`` succeeds. A found
    environment is remembered for the rest of the sample; a miss is not (the
    file may appear later).

    This is a checkpoint.

    Args:
        file: The path (or, with *on_path*, the program) to look for.
        on_path: Look for a program on the ``PATH`` instead of a file.
        name: Look only in this environment (``"default"``: the default).

    Returns:
        The environment, or ``None`` when none holds *file*.

    Raises:
        ProcessLookupError: There is no sandbox in this context.
        ValueError: *name* is not one of the sample's environments.
        Exception: Anything other than "not there" raised by ``read_file``
            (the probing ``exec`` never raises out of here).

    **Cancellation:** cancelling the search leaves the cache as it was.
    """
    await anyio.lowlevel.checkpoint()
    envs = _current()
    candidates = [_lookup(envs, name)] if name is not None else list(envs.values())
    cache = _with_cache.get()
    key = (name, file, on_path)
    if cache is not None and key in cache:
        return cache[key]
    for env in candidates:
        found = await (_on_path(env, file) if on_path else _holds(env, file))
        if found:
            if cache is not None:
                cache[key] = env
            return env
    return None


async def _on_path(env: SandboxEnvironment, program: str) -> bool:
    try:
        return (await env.exec(["which", program])).success
    except SandboxUnavailableError:
        return False


async def _holds(env: SandboxEnvironment, file: str) -> bool:
    try:
        if (await env.exec(["test", "-r", file])).success:
            return True
    except Exception:
        pass  # a failed probe only means "try read_file"
    try:
        await env.read_file(file, text=False)
    except (FileNotFoundError, IsADirectoryError, PermissionError, UnicodeDecodeError):
        return False
    except OutputLimitExceededError:
        return True
    return True
