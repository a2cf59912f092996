"""Task scopes: ``corral.task(...)`` and the settings it carries.

A task is an async context manager around a task group (a nursery). Work
started with :meth:`Task.start_soon` or :meth:`Task.start` runs inside it;
when the body raises or is cancelled, everything inside is cancelled, and
every subprocess started inside is terminated and reaped before the task
scope exits. Settings (``max_subprocesses``, ``kill_grace``) reach the code
running inside through a context variable, so each task started in the task
group sees the settings of the task that started it.
"""

from __future__ import annotations

import enum
import os
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVarTuple, Unpack, final

import anyio

from .._util import NoPublicConstructor
from ._checks import check_limit, check_seconds, env_seconds
from ._limits import Limiter, current_registry
from ._sample import Sample, open_sample

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine
    from contextlib import AbstractAsyncContextManager
    from types import TracebackType

    from anyio.abc import TaskGroup

    from ..sandboxes._environment import SandboxEnvironmentSpec
    from ..sandboxes._lifecycle import TaskSandboxes
    from ._store import Store

__all__ = [
    "KILL_GRACE_ENV",
    "Task",
    "TaskStatistics",
    "current_kill_grace",
    "current_task",
    "subprocess_limiter",
    "task",
]

PosArgsT = TypeVarTuple("PosArgsT")

#: Environment variable that sets the default kill grace, in seconds.
KILL_GRACE_ENV = "CORRAL_KILL_GRACE"
#: Seconds between SIGTERM and SIGKILL when neither a task nor the environment says.
DEFAULT_KILL_GRACE = 2.0
SUBPROCESSES = "subprocesses"

_current_task: ContextVar[Task | None] = ContextVar("corral.current_task", default=None)


class _State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class TaskStatistics:
    """A snapshot of a :class:`Task`.

    Attributes:
        name: The task's name.
        state: ``"new"``, ``"running"`` or ``"closed"``.
        subprocesses_running: Subprocesses holding a slot of the task's limit.
        max_subprocesses: The task's subprocess limit.
    """

    name: str
    state: str
    subprocesses_running: int
    max_subprocesses: int


@final
class Task(metaclass=NoPublicConstructor):
    """A running task scope; get one from :func:`task`.

    Use it once, as ``async with corral.task(...) as task:``. Entering a task a
    second time raises :class:`RuntimeError`.
    """

    def __init__(
        self,
        name: str,
        max_subprocesses: int | None,
        kill_grace: float | None,
        sandbox: SandboxEnvironmentSpec | None = None,
        max_sandboxes: int | None = None,
        sandbox_cleanup: bool = True,
    ) -> None:
        self.name = name
        self.sandbox = sandbox
        self.max_sandboxes = max_sandboxes
        self.sandbox_cleanup = sandbox_cleanup
        self._sandboxes: TaskSandboxes | None = None
        self.max_subprocesses = max_subprocesses
        self.kill_grace = kill_grace
        self._state = _State.NEW
        self._task_group: TaskGroup | None = None
        self._token: Token[Task | None] | None = None
        # Effective settings, resolved on entry: a task that leaves a setting
        # as None inherits it from the enclosing task.
        self._limiter: Limiter | None = None
        self._owns_limiter = False
        self._kill_grace: float | None = kill_grace

    def __repr__(self) -> str:
        return f"<corral Task {self.name!r} {self._state.value}>"

    async def __aenter__(self) -> Task:
        if self._state is not _State.NEW:
            raise RuntimeError(
                f"task {self.name!r} has already been entered; "
                "call corral.task() again for a new task scope"
            )
        parent = _current_task.get()
        if self.max_subprocesses is not None:
            # A task-specific limit gets its own registry entry, so that
            # concurrency_status() shows it while the task runs.
            self._limiter = current_registry().get_or_create(
                f"{SUBPROCESSES}/{self.name}",
                f"{SUBPROCESSES}@task-{id(self):x}",
                self.max_subprocesses,
            )
            self._owns_limiter = True
        elif parent is not None:
            self._limiter = parent._limiter
        else:
            self._limiter = _shared_limiter()
        if self._kill_grace is None and parent is not None:
            self._kill_grace = parent._kill_grace
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        self._token = _current_task.set(self)
        self._state = _State.RUNNING
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        assert self._task_group is not None
        assert self._token is not None
        _current_task.reset(self._token)
        try:
            return await self._task_group.__aexit__(exc_type, exc_value, traceback)
        finally:
            self._state = _State.CLOSED
            if self._sandboxes is not None:
                await self._sandboxes.aclose(self.sandbox_cleanup)
            if self._owns_limiter and self._limiter is not None:
                current_registry().discard(self._limiter)

    def _running_group(self) -> TaskGroup:
        if self._state is not _State.RUNNING or self._task_group is None:
            raise RuntimeError(f"task {self.name!r} is not running ({self._state.value})")
        return self._task_group

    def start_soon(
        self,
        func: Callable[[Unpack[PosArgsT]], Coroutine[Any, Any, Any]],
        *args: *PosArgsT,
        name: object = None,
    ) -> None:
        """Start ``func(*args)`` in the task's task group.

        This is not a checkpoint. The task scope waits for it to finish; if it
        raises, the other work in the task is cancelled and the error
        propagates out of the ``async with`` block.

        Raises:
            RuntimeError: The task is not running.
        """
        self._running_group().start_soon(func, *args, name=name)

    async def start(
        self, func: Callable[..., Coroutine[Any, Any, Any]], *args: object, name: object = None
    ) -> Any:
        """Start ``func(*args, task_status=...)`` and wait until it reports ready.

        Returns the value *func* passes to ``task_status.started()``.

        Raises:
            RuntimeError: The task is not running, or *func* returned without
                calling ``task_status.started()``.
        """
        return await self._running_group().start(func, *args, name=name)

    def sample(
        self,
        id: int | str,
        *,
        metadata: dict[str, Any] | None = None,
        store: Store | dict[str, Any] | None = None,
        sandbox: object = None,
        time_limit: float | None = None,
    ) -> AbstractAsyncContextManager[Sample]:
        """Open a sample scope: ``async with task.sample(id) as sample:``.

        Inside the scope, ``store()`` and ``transcript()`` resolve to the
        sample's own, and the scope is recorded as a span of type
        ``"sample"`` whose ``StoreEvent`` holds every change the sample made
        (the initial contents are recorded first, as a ``StoreEvent`` of
        their own). Concurrent samples never see each other's state.

        With a sandbox (the sample's *sandbox*, else the task's), the scope
        holds a slot of the provider's limit for its whole life, runs the
        provider's ``task_init`` once per task, then ``sample_init``, makes
        the environments available to ``sandbox()``, and on the way out runs
        ``sample_cleanup`` (``interrupted=True`` when the sample was
        cancelled, timed out or raised), shielded and bounded.

        Args:
            id: The sample's id.
            metadata: JSON-serialisable data describing the sample.
            store: Initial store contents (a dict is deep-copied), or the
                :class:`Store` to use.
            sandbox: A sandbox type name, a ``(type, config)`` tuple or a
                ``SandboxEnvironmentSpec``; defaults to the task's.
            time_limit: Seconds the sample may run: at the limit its body is
                cancelled, its cleanup runs, and ``TimeoutError`` is raised.

        Raises:
            TypeError: An argument has the wrong type, or *metadata* is not
                JSON-serialisable.
            ValueError: *time_limit* is negative.
            RuntimeError: The task is not running.
        """
        self._running_group()
        limit = check_seconds("time_limit", time_limit)
        spec = self.sandbox
        if sandbox is not None:
            from ..sandboxes._lifecycle import as_spec

            spec = as_spec(sandbox, "sandbox")
        factory = None
        if spec is not None:
            from ..sandboxes._lifecycle import SampleSandboxes, TaskSandboxes

            if self._sandboxes is None:
                self._sandboxes = TaskSandboxes(self.name, self.sandbox, self.max_sandboxes)
            sandboxes, cleanup, chosen = self._sandboxes, self.sandbox_cleanup, spec

            def factory(metadata: dict[str, Any]) -> SampleSandboxes:
                return SampleSandboxes(sandboxes, chosen, metadata, cleanup)

        return open_sample(id, metadata, store, factory, limit)

    def cancel(self, reason: str | None = None) -> None:
        """Cancel everything running in the task, including its body.

        This is not a checkpoint; the cancellation arrives at the next
        checkpoint of each task inside. Subprocesses are terminated and reaped
        before the task scope exits.
        """
        self._running_group().cancel_scope.cancel(reason)

    def statistics(self) -> TaskStatistics:
        """Return a frozen snapshot of the task.

        ``subprocesses_running`` counts the holders of the limit the task's
        subprocesses use: its own, else the enclosing task's, else the event
        loop's shared ``"subprocesses"`` limit (whose other holders count too).
        """
        limiter = self._limiter
        if limiter is None:
            limit = self.max_subprocesses if self.max_subprocesses is not None else _default_limit()
            return TaskStatistics(self.name, self._state.value, 0, limit)
        stats = limiter.statistics()
        return TaskStatistics(self.name, self._state.value, stats.in_use, stats.limit)


def task(
    name: str,
    *,
    max_subprocesses: int | None = None,
    kill_grace: float | None = None,
    sandbox: object = None,
    max_sandboxes: int | None = None,
    sandbox_cleanup: bool = True,
) -> Task:
    """Create a task scope, to be entered with ``async with``.

    Args:
        name: The task's name, used in messages and status displays.
        max_subprocesses: How many subprocesses may run at once inside this
            task; the task gets a limit of its own, separate from the shared
            one. ``None`` uses the enclosing task's limit, or outside any task
            the event loop's shared ``"subprocesses"`` limit
            (``os.cpu_count()`` slots).
        kill_grace: Seconds between SIGTERM and SIGKILL when a subprocess
            inside the task is cancelled or times out. ``None`` inherits the
            enclosing task's, else takes ``$CORRAL_KILL_GRACE``, else 2 s.
        sandbox: The default sandbox of the task's samples: a type name
            (``"local"``), a ``(type, config)`` tuple or a
            ``SandboxEnvironmentSpec``. Each provider's ``task_init`` runs once,
            before the first sample that uses it, and its ``task_cleanup``
            when the task scope exits (also on error or cancellation,
            shielded and bounded).
        max_sandboxes: How many samples may hold a sandbox at once; ``None``
            takes the provider's ``default_concurrency()``.
        sandbox_cleanup: ``False`` skips the cleanup hooks, to keep sandboxes
            around for debugging.

    Returns:
        A :class:`Task`, not yet entered.

    Raises:
        TypeError: An argument has the wrong type.
        ValueError: *name* is empty, *max_subprocesses* is less than 1 or
            *kill_grace* is negative.

    **Cancellation:** leaving the ``async with`` block waits for the work
    started in the task. If the body or any of that work raises, or the
    enclosing scope is cancelled, all of it is cancelled, and the block exits
    only once every subprocess started inside has been terminated and reaped.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    if not name:
        raise ValueError("name must not be empty")
    if max_subprocesses is not None:
        check_limit("max_subprocesses", max_subprocesses)
    grace = check_seconds("kill_grace", kill_grace, finite=True)
    spec = None
    if sandbox is not None:
        from ..sandboxes._lifecycle import as_spec

        spec = as_spec(sandbox, "sandbox")
    if max_sandboxes is not None:
        check_limit("max_sandboxes", max_sandboxes)
    if not isinstance(sandbox_cleanup, bool):
        raise TypeError(f"sandbox_cleanup must be a bool, got {type(sandbox_cleanup).__name__}")
    return Task._create(name, max_subprocesses, grace, spec, max_sandboxes, sandbox_cleanup)


def current_task() -> Task | None:
    """Return the innermost running task scope, or ``None`` outside any."""
    return _current_task.get()


def current_kill_grace() -> float:
    """Return the kill grace in force: the task's, else ``$CORRAL_KILL_GRACE``, else 2 s.

    Raises:
        ValueError: ``$CORRAL_KILL_GRACE`` is not a number of seconds.
    """
    running = _current_task.get()
    if running is not None and running._kill_grace is not None:
        return running._kill_grace
    return env_seconds(KILL_GRACE_ENV, DEFAULT_KILL_GRACE)


def _default_limit() -> int:
    return os.cpu_count() or 1


def subprocess_limiter() -> Limiter:
    """Return the limiter that ``subprocess()`` takes a slot of, here and now."""
    running = _current_task.get()
    if running is not None and running._limiter is not None:
        return running._limiter
    return _shared_limiter()


def _shared_limiter() -> Limiter:
    return current_registry().get_or_create(SUBPROCESSES, SUBPROCESSES, _default_limit())
