"""The sandbox lifecycle a task scope owns.

A task with a sandbox spec runs ``task_init`` once per provider and config,
before the first sample that needs it, and ``task_cleanup`` when the task
scope exits. Each sample holds a slot of the provider's limit
(``max_sandboxes``, else ``default_concurrency()``) for its whole life, runs
``sample_init``, installs the environments (each wrapped once, so every call
is recorded and traced) for ``sandbox()``, and on exit runs
``sample_cleanup``, with ``interrupted=True`` when the sample was cancelled,
timed out or raised. Cleanups run shielded and bounded: a provider that
hangs is given up on with a warning, and the task still exits.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import anyio

from ..runtime._limits import current_registry
from ._context import sandbox_environments
from ._environment import SandboxEnvironment, SandboxEnvironmentSpec
from ._proxy import SandboxEnvironmentProxy
from ._registry import sandbox_class

if TYPE_CHECKING:
    from collections.abc import Hashable
    from types import TracebackType

__all__ = ["CLEANUP_TIMEOUT", "SampleSandboxes", "TaskSandboxes", "as_spec"]

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
    if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str):
        return SandboxEnvironmentSpec(spec[0], spec[1])
    raise TypeError(
        f"{parameter} must be a sandbox type name, a (type, config) tuple or a "
        f"SandboxEnvironmentSpec, got {spec!r}"
    )


async def _bounded(what: str, call: Any) -> None:
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
    """*spec* itself, or for a config that cannot be hashed (a dict), its canonical JSON."""
    try:
        hash(spec)
    except TypeError:
        return (spec.type, json.dumps(spec.config, sort_keys=True, default=repr))
    return spec


class TaskSandboxes:
    """The providers a task has initialised, for ``task_cleanup`` at its end."""

    def __init__(
        self, task_name: str, default: SandboxEnvironmentSpec | None, max_sandboxes: int | None
    ) -> None:
        self.task_name = task_name
        self.default = default
        self.max_sandboxes = max_sandboxes
        self._started: dict[Hashable, tuple[SandboxEnvironmentSpec, type[SandboxEnvironment]]] = {}
        self._lock = anyio.Lock()

    async def ensure_started(self, spec: SandboxEnvironmentSpec) -> type[SandboxEnvironment]:
        """Run ``task_init`` for *spec* unless it ran already; return the provider class."""
        provider = sandbox_class(spec.type)
        key = _spec_key(spec)
        async with self._lock:
            if key not in self._started:
                await provider.task_init(self.task_name, spec.config)
                self._started[key] = (spec, provider)
        return provider

    async def aclose(self, cleanup: bool) -> None:
        """Run ``task_cleanup`` of every started provider, shielded and bounded."""
        started, self._started = self._started, {}
        for spec, provider in started.values():
            await _bounded(
                f"task_cleanup of sandbox {spec.type!r}",
                provider.task_cleanup(self.task_name, spec.config, cleanup),
            )


class SampleSandboxes:
    """The environments of one sample, from ``sample_init`` to ``sample_cleanup``."""

    def __init__(
        self,
        sandboxes: TaskSandboxes,
        spec: SandboxEnvironmentSpec,
        metadata: dict[str, Any],
        cleanup: bool,
    ) -> None:
        self._sandboxes = sandboxes
        self._spec = spec
        self._metadata = metadata
        self._cleanup = cleanup
        self._stack = AsyncExitStack()
        self._provider: type[SandboxEnvironment] | None = None
        self._environments: dict[str, SandboxEnvironment] | None = None

    async def __aenter__(self) -> dict[str, SandboxEnvironment]:
        spec = self._spec
        provider = await self._sandboxes.ensure_started(spec)
        self._provider = provider
        own_limit = self._sandboxes.max_sandboxes
        limit = own_limit or provider.default_concurrency()
        try:
            if limit is not None and math.isfinite(limit):
                # A task's max_sandboxes is its own limit (as max_subprocesses
                # is); the provider's default concurrency is shared by the loop.
                key = f"sandboxes/{spec.type}"
                if own_limit:
                    key = f"{key}@task-{id(self._sandboxes):x}"
                limiter = current_registry().get_or_create(
                    f"sandboxes/{spec.type}", key, int(limit)
                )
                slot = object()
                await limiter.acquire_on_behalf_of(slot)
                self._stack.callback(limiter.release_on_behalf_of, slot)
            try:
                environments = await provider.sample_init(
                    self._sandboxes.task_name, spec.config, self._metadata
                )
            except Exception as exc:
                exc.add_note(
                    f"raised by sample_init() of sandbox {spec.type!r} ({provider.__name__})"
                )
                raise
            if not environments:
                raise ValueError(
                    f"sample_init() of sandbox {spec.type!r} ({provider.__name__}) "
                    "returned no environments"
                )
            self._environments = environments
            proxies: dict[str, SandboxEnvironment] = {
                name: SandboxEnvironmentProxy(env) for name, env in environments.items()
            }
            self._stack.enter_context(sandbox_environments(proxies))
        except BaseException:
            await self._close(interrupted=True)
            raise
        return proxies

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._close(interrupted=exc_type is not None)

    async def _close(self, interrupted: bool) -> None:
        environments, self._environments = self._environments, None
        try:
            if environments is not None and self._cleanup and self._provider is not None:
                await _bounded(
                    f"sample_cleanup of sandbox {self._spec.type!r}",
                    self._provider.sample_cleanup(
                        self._sandboxes.task_name, self._spec.config, environments, interrupted
                    ),
                )
        finally:
            await self._stack.aclose()
