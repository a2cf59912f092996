"""The sandbox lifecycle that task and sample scopes own.

A task runs ``task_init`` once per provider and config: its own sandbox's
when the task is entered (so a configuration error surfaces once, before any
sample starts), a sample's own sandbox's before the first sample that needs
it. ``task_cleanup`` of every provider started runs when the task scope
exits. Each sample holds a slot of the provider's limit for its whole life
(the task's ``max_sandboxes``, a limiter the task owns and drops when it
exits; else the provider's ``default_concurrency()``, shared by the event
loop), runs ``sample_init``, installs the environments, each wrapped once in
the :class:`~corral.sandboxes._proxy.SandboxEnvironmentProxy` that enforces
the contract, for ``sandbox()``, and on exit runs ``sample_cleanup``, with
``interrupted=True`` when the sample was cancelled, timed out or raised.
Cleanups run shielded and bounded: a provider that hangs is given up on with
a warning, and the scope still exits.

Configs reach providers as the providers take them: a ``dict`` config
becomes the provider's model (``config_deserialize``, or ``ComposeConfig``
for a docker-compatible provider) before ``task_init_environment``,
``task_init``, ``sample_init``, ``sample_cleanup`` and ``task_cleanup`` see
it. A provider's ``task_init_environment`` is asked, for the task's sandbox
and then for each sample with its metadata, which environment variables its
``task_init`` needs: each distinct answer gets a ``task_init`` of its own
(run with those variables in ``os.environ``) and a ``task_cleanup``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import warnings
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
from pydantic import BaseModel

from .._core._limiters import current_registry
from .._core._working import waiting
from ..sandboxes._environment import SandboxEnvironment, SandboxEnvironmentSpec
from ..sandboxes._lookup import sandbox_environments
from ..sandboxes._proxy import SandboxEnvironmentProxy, wrap_environments
from ..sandboxes._registry import provider_config, sandbox_class

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Hashable, Iterator, Mapping

    from .._core._limiters import Limiter

__all__ = ["CLEANUP_TIMEOUT", "TaskSandboxes", "as_spec", "open_task_sandboxes", "sample_sandboxes"]

logger = logging.getLogger("corral.sandbox")

#: Seconds a cleanup hook may take before it is given up on.
CLEANUP_TIMEOUT = 60.0


def as_spec(spec: object, parameter: str) -> SandboxEnvironmentSpec | None:
    """Normalise ``"local"``, ``("ssh", config)`` or a spec; ``None`` stays ``None``.

    Raises:
        TypeError: *spec* is none of these; the message names *parameter*.
    """
    if spec is None or isinstance(spec, SandboxEnvironmentSpec):
        return spec
    if isinstance(spec, str) and spec:
        return SandboxEnvironmentSpec(spec)
    if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str) and spec[0]:
        return SandboxEnvironmentSpec(spec[0], spec[1])
    raise TypeError(
        f"{parameter} must be a sandbox type name, a (type, config) tuple or a "
        f"SandboxEnvironmentSpec, got {spec!r}"
    )


async def _bounded(what: str, call: Awaitable[None]) -> None:
    """Await *call* shielded, for at most :data:`CLEANUP_TIMEOUT`; warn on failure."""
    with anyio.CancelScope(shield=True):
        with anyio.move_on_after(CLEANUP_TIMEOUT) as scope:
            try:
                await call
            except Exception as exc:  # a cleanup failure must not hide the sample's outcome
                logger.warning("%s failed: %r", what, exc)
                warnings.warn(f"{what} failed: {exc!r}", RuntimeWarning, stacklevel=2)
        if scope.cancelled_caught:
            warnings.warn(
                f"{what} did not finish within {CLEANUP_TIMEOUT:g} s and was abandoned",
                RuntimeWarning,
                stacklevel=2,
            )


def _spec_key(spec: SandboxEnvironmentSpec) -> Hashable:
    """*spec* itself, or for a config that cannot be hashed (a dict, a model), canonical JSON."""
    try:
        hash(spec)
    except TypeError:
        config = spec.config
        if isinstance(config, BaseModel):
            return (spec.type, type(config), config.model_dump_json())
        return (spec.type, json.dumps(config, sort_keys=True, default=repr))
    return spec


async def _init_environment(
    provider: type[SandboxEnvironment], config: object, metadata: Mapping[str, Any]
) -> tuple[tuple[str, str], ...]:
    """What *provider*'s ``task_init_environment`` asks for, checked and sorted.

    Raises:
        TypeError: It did not return a ``dict`` of ``str`` to ``str`` (the
            message names the provider).
        Exception: Whatever it raised.
    """
    env = await provider.task_init_environment(config, dict(metadata))
    if not isinstance(env, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in env.items()
    ):
        raise TypeError(
            f"{provider.__name__}.task_init_environment() must return a dict of str to str, "
            f"got {env!r}"
        )
    return tuple(sorted(env.items()))


@contextlib.contextmanager
def _environ(env: tuple[tuple[str, str], ...]) -> Iterator[None]:
    """Set *env* in ``os.environ`` for the block, then put back what was there."""
    saved = {key: os.environ.get(key) for key, _ in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class TaskSandboxes:
    """The providers a task has started, and the sandbox limits it owns.

    Made by :func:`open_task_sandboxes`, which runs ``task_cleanup`` of
    every started provider and drops the limits when the task exits.
    """

    def __init__(
        self, task_name: str, max_sandboxes: int | None, cleanup: bool, limits: contextlib.ExitStack
    ) -> None:
        self.task_name = task_name
        self.max_sandboxes = max_sandboxes
        self.cleanup = cleanup
        self._limits = limits
        self._owned: dict[str, Limiter] = {}
        self._started: dict[
            Hashable, tuple[SandboxEnvironmentSpec, type[SandboxEnvironment], Any]
        ] = {}
        self._lock = anyio.Lock()

    async def ensure_started(
        self, spec: SandboxEnvironmentSpec, metadata: Mapping[str, Any] | None = None
    ) -> tuple[type[SandboxEnvironment], Any]:
        """Run ``task_init`` for *spec* unless it ran already; return the provider and its config.

        The config is *spec*'s as the provider takes it (a ``dict`` turned
        into its model). ``task_init`` runs once per spec and per set of
        variables ``task_init_environment(config, metadata)`` returns, with
        those variables in ``os.environ`` while it runs.

        Raises:
            ValueError, ImportError, TypeError: The sandbox type is unknown or
                cannot be imported (see ``sandbox_class``).
            Exception: Whatever the provider's ``config_deserialize``,
                ``task_init_environment`` or ``task_init`` raised.
        """
        provider = sandbox_class(spec.type)
        config = provider_config(provider, spec.config)
        env = await _init_environment(provider, config, metadata or {})
        key = (_spec_key(spec), env)
        async with self._lock:
            if key not in self._started:
                with _environ(env):
                    await provider.task_init(self.task_name, config)
                self._started[key] = (spec, provider, config)
        return provider, config

    def limiter(
        self, spec: SandboxEnvironmentSpec, provider: type[SandboxEnvironment]
    ) -> Limiter | None:
        """The limit a sample of *spec* holds a slot of, or ``None`` for no limit.

        A task's ``max_sandboxes`` is a limiter of its own (as
        ``max_subprocesses`` is), one per sandbox type, made on first use and
        dropped when the task exits; the provider's default concurrency is
        shared by the event loop.
        """
        name = f"sandboxes/{spec.type}"
        if self.max_sandboxes is not None:
            owned = self._owned.get(spec.type)
            if owned is None:
                owned = self._owned[spec.type] = self._limits.enter_context(
                    current_registry().owned(name, self.max_sandboxes)
                )
            return owned
        default = provider.default_concurrency()
        if default is None or not math.isfinite(default):
            return None
        return current_registry().named(name, name, int(default))

    async def aclose(self) -> None:
        """Run ``task_cleanup`` of every started provider, shielded and bounded."""
        started, self._started = self._started, {}
        for spec, provider, config in started.values():
            await _bounded(
                f"task_cleanup of sandbox {spec.type!r}",
                provider.task_cleanup(self.task_name, config, self.cleanup),
            )


@asynccontextmanager
async def open_task_sandboxes(
    task_name: str,
    default: SandboxEnvironmentSpec | None,
    max_sandboxes: int | None,
    cleanup: bool,
) -> AsyncIterator[TaskSandboxes]:
    """The sandbox side of a task scope: ``task_init`` of *default* now, cleanups at exit.

    Raises:
        Exception: Whatever *default*'s ``task_init`` raised (then the task
            does not start, and nothing is left to clean up).
    """
    with contextlib.ExitStack() as limits:
        sandboxes = TaskSandboxes(task_name, max_sandboxes, cleanup, limits)
        try:
            if default is not None:
                await sandboxes.ensure_started(default)
            yield sandboxes
        finally:
            await sandboxes.aclose()


@asynccontextmanager
async def sample_sandboxes(
    sandboxes: TaskSandboxes, spec: SandboxEnvironmentSpec, metadata: dict[str, Any]
) -> AsyncIterator[dict[str, SandboxEnvironment]]:
    """The environments of one sample, from ``sample_init`` to ``sample_cleanup``.

    Yields the proxies (in the provider's order), which ``sandbox()`` finds
    inside the block. The limit's slot is given back only after the cleanup.

    Raises:
        ValueError: ``sample_init`` returned no environments.
        Exception: Whatever ``sample_init`` raised, with a note naming the provider.
    """
    provider, config = await sandboxes.ensure_started(spec, metadata)
    limiter = sandboxes.limiter(spec, provider)
    slot = object()
    if limiter is not None:
        with waiting():  # the wait for a sandbox slot is not working time
            await limiter.acquire_on_behalf_of(slot)
    try:
        try:
            environments = await provider.sample_init(sandboxes.task_name, config, metadata)
        except Exception as exc:
            exc.add_note(f"raised by sample_init() of sandbox {spec.type!r} ({provider.__name__})")
            raise
        if not environments:
            raise ValueError(
                f"sample_init() of sandbox {spec.type!r} ({provider.__name__}) "
                "returned no environments"
            )
        interrupted = True
        proxies: dict[str, SandboxEnvironmentProxy] = {}
        try:
            proxies = wrap_environments(environments)
            with sandbox_environments(proxies):
                yield dict(proxies)
            interrupted = False
        finally:
            for proxy in proxies.values():  # recorded as killed, before the provider's cleanup
                with anyio.CancelScope(shield=True):
                    await proxy.kill_processes()
            if sandboxes.cleanup:
                await _bounded(
                    f"sample_cleanup of sandbox {spec.type!r}",
                    provider.sample_cleanup(sandboxes.task_name, config, environments, interrupted),
                )
    finally:
        if limiter is not None:
            limiter.release_on_behalf_of(slot)
