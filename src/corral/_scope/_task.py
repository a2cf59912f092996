"""Task scopes: ``corral.task(...)`` and the settings it carries.

A task is an async context manager around a task group (a nursery). Work
started with :meth:`Task.start_soon` or :meth:`Task.start` runs inside it;
when the body raises or is cancelled, everything inside is cancelled, and
every subprocess started inside is terminated and reaped before the task
scope exits.

The scope is written as nested ``with`` blocks in one generator
(:meth:`Task._run`), so Python unwinds it whatever raises where: the
settings it gives the code inside (the kill grace and the subprocess limiter,
as the context variables of :mod:`corral._core._settings`), its own limiter
(created on entry and dropped on exit), its sandboxes (the default
provider's ``task_init`` on entry, every ``task_cleanup`` on exit) and its
task group.
"""

from __future__ import annotations

import contextlib
import enum
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import (
    TYPE_CHECKING,
    Any,
    Protocol,
    TypeAlias,
    TypeVarTuple,
    final,
)

import anyio

from .._core._checks import check_bool, check_limit, check_seconds, check_str
from .._core._limiters import current_registry
from .._core._public import NoPublicConstructor
from .._core._settings import (
    SUBPROCESSES,
    default_subprocess_limit,
    kill_grace,
    subprocess_limiter,
    task_subprocess_limiter,
)
from ..tracing._context import enter_task, leave
from ._lifecycle import as_spec, open_task_sandboxes
from ._sample import Sample, open_sample
from ._signals import cancelled_by_signals, handles_signals

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
    from contextlib import AbstractAsyncContextManager
    from types import TracebackType

    from anyio.abc import TaskGroup, TaskStatus

    from .._core._limiters import Limiter
    from .._state._store import Store
    from ..sandboxes._environment import SandboxEnvironmentSpec
    from ._lifecycle import TaskSandboxes

__all__ = ["SandboxSpec", "Task", "TaskStatistics", "current_task", "task"]

PosArgsT = TypeVarTuple("PosArgsT")

#: What a ``sandbox=`` argument may be: a type name, ``(type, config)`` or a spec.
SandboxSpec: TypeAlias = "str | tuple[str, Any] | SandboxEnvironmentSpec"

_current_task: ContextVar[Task | None] = ContextVar("corral.current_task", default=None)


class _Startable(Protocol[*PosArgsT]):
    """An async function of *args* that reports readiness through ``task_status``."""

    def __call__(self, *args: *PosArgsT, task_status: TaskStatus[Any]) -> Awaitable[object]: ...


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
    """A task scope; get one from :func:`task`.

    Use it once, as ``async with corral.task(...) as task:``. Entering a task a
    second time raises :class:`RuntimeError`. Its settings are read-only.
    """

    __slots__ = (
        "_handle_signals",
        "_kill_grace",
        "_limiter",
        "_max_sandboxes",
        "_max_subprocesses",
        "_name",
        "_sandbox",
        "_sandbox_cleanup",
        "_sandboxes",
        "_scope",
        "_state",
        "_task_group",
    )

    def __init__(
        self,
        name: str,
        max_subprocesses: int | None,
        kill_grace: float | None,
        sandbox: SandboxEnvironmentSpec | None,
        max_sandboxes: int | None,
        sandbox_cleanup: bool,
        handle_signals: bool,
    ) -> None:
        self._name = name
        self._handle_signals = handle_signals
        self._max_subprocesses = max_subprocesses
        self._kill_grace = kill_grace
        self._sandbox = sandbox
        self._max_sandboxes = max_sandboxes
        self._sandbox_cleanup = sandbox_cleanup
        self._state = _State.NEW
        self._scope: AbstractAsyncContextManager[None] | None = None
        self._task_group: TaskGroup | None = None
        self._limiter: Limiter | None = None
        self._sandboxes: TaskSandboxes | None = None

    @property
    def name(self) -> str:
        """The task's name."""
        return self._name

    @property
    def max_subprocesses(self) -> int | None:
        """The task's own subprocess limit, or ``None`` (it uses the enclosing one)."""
        return self._max_subprocesses

    @property
    def kill_grace(self) -> float | None:
        """The task's own kill grace in seconds, or ``None`` (it inherits one)."""
        return self._kill_grace

    @property
    def sandbox(self) -> SandboxEnvironmentSpec | None:
        """The default sandbox of the task's samples."""
        return self._sandbox

    @property
    def max_sandboxes(self) -> int | None:
        """How many samples may hold a sandbox at once (``None``: the provider's default)."""
        return self._max_sandboxes

    @property
    def sandbox_cleanup(self) -> bool:
        """Whether the sandbox cleanup hooks run."""
        return self._sandbox_cleanup

    @property
    def handle_signals(self) -> bool:
        """Whether SIGTERM and SIGHUP cancel the task and then end the process."""
        return self._handle_signals

    def __repr__(self) -> str:
        return f"<corral Task {self._name!r} {self._state.value}>"

    async def __aenter__(self) -> Task:
        if self._state is not _State.NEW:
            raise RuntimeError(
                f"task {self._name!r} has already been entered; "
                "call corral.task() again for a new task scope"
            )
        self._state = _State.RUNNING
        scope = self._run()
        try:
            await scope.__aenter__()
        except BaseException:
            self._state = _State.CLOSED
            raise
        self._scope = scope
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        scope = self._scope
        assert scope is not None
        self._scope = None
        try:
            return await scope.__aexit__(exc_type, exc_value, traceback)
        finally:
            self._state = _State.CLOSED

    @asynccontextmanager
    async def _run(self) -> AsyncIterator[None]:
        with contextlib.ExitStack() as settings:
            settings.callback(leave, enter_task(self._name))  # trace records name the task
            if self._kill_grace is not None:
                token = kill_grace.set(self._kill_grace)
                settings.callback(kill_grace.reset, token)
            if self._max_subprocesses is not None:
                # A limit of the task's own, listed while the task runs.
                limiter = settings.enter_context(
                    current_registry().owned(f"{SUBPROCESSES}/{self._name}", self._max_subprocesses)
                )
            else:
                limiter = subprocess_limiter()  # the enclosing task's, or the shared one
            # Set either way: subprocess() inside finds it without a registry lookup.
            token_limiter = task_subprocess_limiter.set(limiter)
            settings.callback(task_subprocess_limiter.reset, token_limiter)
            self._limiter = limiter
            # Outermost: a termination signal cancels everything below, and
            # ends the process once all of it has unwound.
            shutdown = anyio.CancelScope()
            if self._handle_signals and handles_signals():
                settings.enter_context(cancelled_by_signals(shutdown, self._name))
            with shutdown, _bare_interrupts():
                async with open_task_sandboxes(
                    self._name, self._sandbox, self._max_sandboxes, self._sandbox_cleanup
                ) as sandboxes:
                    self._sandboxes = sandboxes
                    async with anyio.create_task_group() as task_group:
                        self._task_group = task_group
                        token_task = _current_task.set(self)
                        try:
                            yield
                        finally:
                            _current_task.reset(token_task)
                    self._task_group = None
                    self._state = _State.CLOSED

    def _running_group(self) -> TaskGroup:
        if self._state is not _State.RUNNING or self._task_group is None:
            state = "not running yet" if self._state is _State.NEW else self._state.value
            raise RuntimeError(f"task {self._name!r} is not running ({state})")
        return self._task_group

    def start_soon(
        self,
        func: Callable[[*PosArgsT], Coroutine[Any, Any, Any]],
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
        self,
        func: _Startable[*PosArgsT],
        *args: *PosArgsT,
        name: object = None,
    ) -> Any:
        """Start ``func(*args, task_status=...)`` and wait until it reports ready.

        This is a checkpoint. If the caller is cancelled while *func* starts,
        *func* is cancelled too.

        Returns:
            The value *func* passes to ``task_status.started()``.

        Raises:
            RuntimeError: The task is not running, or *func* returned without
                calling ``task_status.started()``.
        """
        return await self._running_group().start(func, *args, name=name)  # type: ignore[arg-type]

    def sample(
        self,
        id: int | str,
        *,
        metadata: dict[str, Any] | None = None,
        store: Store | dict[str, Any] | None = None,
        sandbox: SandboxSpec | None = None,
        time_limit: float | None = None,
        working_limit: float | None = None,
    ) -> AbstractAsyncContextManager[Sample]:
        """Open a sample scope: ``async with task.sample(id) as sample:``.

        Inside the scope, ``store()`` and ``transcript()`` resolve to the
        sample's own, and the scope is recorded as a span of type
        ``"sample"`` whose ``StoreEvent`` holds every change the sample made
        (the initial contents are recorded first, as a ``StoreEvent`` of
        their own). Concurrent samples never see each other's state.

        With a sandbox (the sample's *sandbox*, else the task's), the scope
        holds a slot of the provider's limit for its whole life, runs the
        provider's ``task_init`` once per task (the task's own sandbox had
        it run when the task was entered), then ``sample_init``, makes the
        environments available to ``sandbox()``, and on the way out runs
        ``sample_cleanup`` (``interrupted=True`` when the sample was
        cancelled, timed out or raised), shielded and bounded.

        Args:
            id: The sample's id.
            metadata: JSON-serialisable data describing the sample.
            store: Initial store contents (a dict is deep-copied), or the
                :class:`~corral.util.Store` to use.
            sandbox: A sandbox type name, a ``(type, config)`` tuple or a
                ``SandboxEnvironmentSpec``; defaults to the task's.
            time_limit: Seconds the sample may run: at the limit its body is
                cancelled, its cleanup runs, and ``TimeoutError`` is raised.
            working_limit: Seconds of working time the sample may use: its
                wall time less the time it waits for concurrency and
                sandbox slots (see ``corral.util.working_limit``). At the
                limit, as for *time_limit*.

        Raises:
            TypeError: An argument has the wrong type, or *metadata* is not
                JSON-serialisable.
            ValueError: *time_limit* or *working_limit* is negative or NaN.
            RuntimeError: The task is not running.

        The ``TimeoutError`` of a limit is also a
        ``corral.util.LimitExceededError`` (``type`` ``"time"`` or
        ``"working"``); ``corral.util.sample_limits()`` returns both limits
        inside the sample. ``corral.util.background()`` work runs until the
        body ends.

        **Cancellation:** the scope always unwinds in order (background work,
        span, sandboxes, limits), whatever raises inside it; a cancelled or
        timed-out sample's sandbox is cleaned up before the exception
        propagates.
        """
        self._running_group()
        limit = check_seconds("time_limit", time_limit)
        working = check_seconds("working_limit", working_limit)
        spec = self._sandbox if sandbox is None else as_spec(sandbox, "sandbox")
        sandboxes = self._sandboxes if spec is not None else None
        assert spec is None or sandboxes is not None
        return open_sample(id, metadata, store, sandboxes, spec, limit, working)

    def cancel(self, reason: str | None = None) -> None:
        """Cancel everything running in the task, including its body.

        This is not a checkpoint; the cancellation arrives at the next
        checkpoint of each task inside. Subprocesses are terminated and reaped
        before the task scope exits.

        Raises:
            RuntimeError: The task is not running.
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
            limit = self._max_subprocesses or default_subprocess_limit()
            return TaskStatistics(self._name, self._state.value, 0, limit)
        return TaskStatistics(self._name, self._state.value, limiter.in_use, limiter.limit)


@contextlib.contextmanager
def _bare_interrupts() -> Iterator[None]:
    """Let a Ctrl-C out as the ``KeyboardInterrupt`` it is, not wrapped in an exception group.

    Under trio, Ctrl-C arrives in whichever task runs, and the task group wraps
    it: uncaught, a group makes the interpreter exit with status 1 and a long
    traceback, where a bare ``KeyboardInterrupt`` exits by SIGINT, as under asyncio.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        interrupts, rest = group.split(KeyboardInterrupt)
        if interrupts is None or rest is not None:
            raise
        first: BaseException = interrupts
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None


def task(
    name: str,
    *,
    max_subprocesses: int | None = None,
    kill_grace: float | None = None,
    sandbox: SandboxSpec | None = None,
    max_sandboxes: int | None = None,
    sandbox_cleanup: bool = True,
    handle_signals: bool = True,
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
            ``SandboxEnvironmentSpec``. Its provider's ``task_init`` runs when
            the task is entered, so a configuration error is raised there,
            once, before any sample starts; ``task_cleanup`` runs when the
            task scope exits (also on error or cancellation, shielded and
            bounded). A sample with a sandbox of its own runs that provider's
            ``task_init`` before the first such sample.
        max_sandboxes: How many samples may hold a sandbox at once; ``None``
            takes the provider's ``default_concurrency()``.
        sandbox_cleanup: ``False`` skips the cleanup hooks, to keep sandboxes
            around for debugging.
        handle_signals: While the task is open in the main thread, SIGTERM
            and SIGHUP cancel it (and every other task that handles them),
            and once the last such task has exited the process ends by that
            signal, as it would have without corral but with everything
            cleaned up; a second signal ends it at once. A signal the
            program handles (or ignores) itself is left alone, and so is
            every signal when ``$CORRAL_HANDLE_SIGNALS`` is ``0``. ``False``
            leaves them alone for this task.

    Returns:
        A :class:`Task`, not yet entered.

    Raises:
        TypeError: An argument has the wrong type.
        ValueError: *name* is empty, *max_subprocesses* or *max_sandboxes* is
            less than 1, or *kill_grace* is negative.

    **Cancellation:** leaving the ``async with`` block waits for the work
    started in the task. If the body or any of that work raises, or the
    enclosing scope is cancelled, all of it is cancelled, and the block exits
    only once every subprocess started inside has been terminated and reaped.
    With a *sandbox*, entering the block runs its provider's ``task_init``,
    which may wait.
    """
    check_str("name", name, empty=False)
    if max_subprocesses is not None:
        check_limit("max_subprocesses", max_subprocesses)
    grace = check_seconds("kill_grace", kill_grace, finite=True)
    spec = as_spec(sandbox, "sandbox")
    if max_sandboxes is not None:
        check_limit("max_sandboxes", max_sandboxes)
    check_bool("sandbox_cleanup", sandbox_cleanup)
    check_bool("handle_signals", handle_signals)
    return Task._create(
        name, max_subprocesses, grace, spec, max_sandboxes, sandbox_cleanup, handle_signals
    )


def current_task() -> Task | None:
    """Return the innermost running task scope, or ``None`` outside any."""
    return _current_task.get()
