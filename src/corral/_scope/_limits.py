"""Scoped limits: ``time_limit()``, ``working_limit()`` and ``apply_limits()``.

Each limit is a cancel scope. When it is exceeded, everything inside its
``with`` block is cancelled (at the next checkpoint of each task inside), and
:class:`LimitExceededError` is raised where the block exits, not where the
code was when the limit fired. Limits nest; the tightest fires first and
each reports itself as the error's ``source``. When an outer limit has fired
too, the error leaving it is the outer one (the inner one is its
``__cause__``), so a caller that catches only its own limits (``apply_limits
(..., catch_errors=True)``) cannot swallow an enclosing limit.

``time_limit()`` is a deadline. ``working_limit()`` is a deadline that is
pushed back by the time the block spends waiting (see
:mod:`corral._core._working`): while the block waits for a concurrency slot,
a sandbox slot or inside ``suspend_working_limit()`` the deadline is out of
reach, and when the wait ends it is set to now plus the working time left.
Nothing polls, so a working limit fires while the code runs, in the middle
of a sleep or a subprocess, not only between calls.

A sample's own limits (``task.sample(time_limit=..., working_limit=...)``)
are the same objects, entered by the sample scope; :func:`sample_limits`
returns them. When one fires the sample raises an error that is both a
:class:`LimitExceededError` and the builtin ``TimeoutError``.
"""

from __future__ import annotations

import abc
import contextlib
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal, final

import anyio

from .._core._checks import check_bool, check_seconds, type_name
from .._core._public import NoPublicConstructor
from .._core._working import WorkingClock, measured, waiting

if TYPE_CHECKING:
    from collections.abc import Iterator
    from contextlib import AbstractContextManager
    from types import TracebackType

__all__ = [
    "Limit",
    "LimitExceededError",
    "LimitScope",
    "SampleLimits",
    "apply_limits",
    "sample_limit_scope",
    "sample_limits",
    "suspend_working_limit",
    "time_limit",
    "working_limit",
]

LimitType = Literal["message", "time", "working", "token", "turn", "cost", "operator", "custom"]


class LimitExceededError(Exception):
    """A limit was exceeded.

    Raised at the exit of the ``with`` block that applied the limit, after
    the code inside it has been cancelled.

    Args:
        type: The kind of limit (corral raises ``"time"`` and ``"working"``).
        value: The usage measured when the limit was found exceeded.
        limit: The limit that applied.
        message: A human-readable message (default: one naming *type* and *limit*).
        source: The :class:`Limit` that raised it, if any.

    Attributes:
        type: As given.
        value: As given.
        value_str: *value* formatted for display.
        limit: As given.
        limit_str: *limit* formatted for display.
        message: The message.
        source: As given.
    """

    def __init__(
        self,
        type: LimitType,
        *,
        value: float,
        limit: float,
        message: str | None = None,
        source: Limit | None = None,
    ) -> None:
        self.type = type
        self.value = value
        self.value_str = _number(value)
        self.limit = limit
        self.limit_str = _number(limit)
        self.message = message if message is not None else f"{type} limit of {limit:,} exceeded"
        self.source = source
        super().__init__(self.message)


def _number(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:,.2f}"


class Limit(abc.ABC):
    """A limit, applied to the body of a ``with`` block.

    Get one from :func:`time_limit` or :func:`working_limit`, or subclass it
    for a limit of your own (raise :class:`LimitExceededError` with
    ``source=self``). An instance may be entered once.
    """

    @abc.abstractmethod
    def __enter__(self) -> Limit: ...

    @abc.abstractmethod
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None: ...

    @property
    @abc.abstractmethod
    def limit(self) -> float | None:
        """The limit, or ``None`` for no limit."""

    @property
    @abc.abstractmethod
    def usage(self) -> float:
        """How much of the limited resource has been used (0 before the block is entered)."""

    @property
    def remaining(self) -> float | None:
        """``limit - usage``, or ``None`` when there is no limit."""
        limit = self.limit
        return None if limit is None else limit - self.usage


class _ScopedLimit(Limit):
    """A limit that is a cancel scope around its block (entered once)."""

    _kind: ClassVar[Literal["time", "working"]]
    _factory: ClassVar[str]

    def __init__(self, limit: float | None) -> None:
        self._limit = limit
        self._run: AbstractContextManager[None] | None = None
        self._entered = False

    def __repr__(self) -> str:
        limit = "no limit" if self._limit is None else f"limit {self._limit:g} s"
        return f"<corral {self._factory}: {limit}, {self.usage:.3f} s used>"

    @property
    def limit(self) -> float | None:
        return self._limit

    def __enter__(self) -> Limit:
        if self._entered:
            raise RuntimeError(
                f"this {self._factory}() has already been entered; "
                f"call {self._factory}() again for another block"
            )
        self._entered = True
        run = self._scope()
        run.__enter__()
        self._run = run
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        run, self._run = self._run, None
        if run is None:
            raise RuntimeError(f"this {self._factory}() was exited without being entered")
        return run.__exit__(exc_type, exc_value, traceback)

    @contextlib.contextmanager
    def _scope(self) -> Iterator[None]:
        with anyio.CancelScope() as scope:
            try:
                with self._measure(scope):
                    yield
            except LimitExceededError as exc:
                # A limit inside fired; if this one fired too, this one reports.
                if scope.cancel_called and exc.source is not self:
                    raise self._exceeded() from exc
                raise
        if scope.cancelled_caught:
            raise self._exceeded()

    @abc.abstractmethod
    def _measure(self, scope: anyio.CancelScope) -> AbstractContextManager[object]:
        """Start measuring, and set *scope*'s deadline; stop at the end of the block."""

    def _exceeded(self) -> LimitExceededError:
        limit = self._limit
        assert limit is not None
        usage = self.usage
        return LimitExceededError(
            self._kind,
            value=usage,
            limit=limit,
            message=f"{self._kind} limit of {limit:g} seconds exceeded ({usage:.2f} s)",
            source=self,
        )


@final
class _TimeLimit(_ScopedLimit):
    _kind = "time"
    _factory = "time_limit"

    def __init__(self, limit: float | None) -> None:
        super().__init__(limit)
        self._start: float | None = None
        self._end: float | None = None

    @property
    def usage(self) -> float:
        if self._start is None:
            return 0.0
        end = self._end if self._end is not None else anyio.current_time()
        return end - self._start

    @contextlib.contextmanager
    def _measure(self, scope: anyio.CancelScope) -> Iterator[None]:
        self._start = start = anyio.current_time()
        if self._limit is not None:
            scope.deadline = start + self._limit
        try:
            yield
        finally:
            self._end = anyio.current_time()


@final
class _WorkingLimit(_ScopedLimit):
    _kind = "working"
    _factory = "working_limit"

    def __init__(self, limit: float | None) -> None:
        super().__init__(limit)
        self._clock: WorkingClock | None = None

    @property
    def usage(self) -> float:
        return 0.0 if self._clock is None else self._clock.usage()

    def _measure(self, scope: anyio.CancelScope) -> AbstractContextManager[object]:
        limit = self._limit
        if limit is None:
            self._clock = WorkingClock()
        else:

            def move_deadline() -> None:
                assert self._clock is not None
                scope.deadline = self._clock.deadline(limit)

            self._clock = WorkingClock(move_deadline)
            scope.deadline = self._clock.deadline(limit)
        return measured(self._clock)


def _check_limit(limit: object) -> float | None:
    return check_seconds("limit", limit)


def time_limit(limit: float | None) -> Limit:
    """Limit the wall time of a ``with`` block.

    The clock starts when the block is entered. Limits nest: the tightest
    fires first.

    Args:
        limit: Seconds the block may run; ``None`` for no limit.

    Returns:
        A :class:`Limit` to enter once with ``with``.

    Raises:
        TypeError: *limit* is not a number or ``None``.
        ValueError: *limit* is negative or NaN.

    **Cancellation:** at the limit, the code inside the block is cancelled
    (subprocesses it started are terminated and reaped as for any
    cancellation) and :class:`LimitExceededError` (``type="time"``) is raised
    where the block exits. Creating the limit is not a checkpoint; entering
    and leaving the block are not either.
    """
    return _TimeLimit(_check_limit(limit))


def working_limit(limit: float | None) -> Limit:
    """Limit the working time of a ``with`` block: its wall time less its waits.

    Waiting is time during which some code inside the block waits for a
    concurrency slot (``concurrency()``), for a sandbox slot, or runs inside
    :func:`suspend_working_limit`. Overlapping waits count once, and while
    one is open the whole block counts as waiting, even if other tasks in it
    are working. Everything else counts as working, sleeps included. Set a
    :func:`time_limit` as well to bound the wall time.

    Args:
        limit: Seconds of working time the block may use; ``None`` for no limit.

    Returns:
        A :class:`Limit` to enter once with ``with``.

    Raises:
        TypeError: *limit* is not a number or ``None``.
        ValueError: *limit* is negative or NaN.

    **Cancellation:** the limit fires while the code runs (it is a cancel
    scope whose deadline moves back by each wait), the code inside is
    cancelled and :class:`LimitExceededError` (``type="working"``) is raised
    where the block exits. No checkpoint is added.
    """
    return _WorkingLimit(_check_limit(limit))


def suspend_working_limit() -> AbstractContextManager[None]:
    """Count the time spent in a ``with`` block as waiting, not working.

    For time the code should not be charged for, such as waiting on a person.
    Every :func:`working_limit` the block runs inside (the sample's
    included) stops counting until the block ends. Outside any it does nothing.

    Returns:
        A context manager; entering and leaving it are not checkpoints.
    """
    return waiting()


@final
class LimitScope(metaclass=NoPublicConstructor):
    """What :func:`apply_limits` yields: which of its limits, if any, was exceeded.

    Attributes:
        limit_error: The :class:`LimitExceededError` of one of the applied
            limits, set when the block exits; ``None`` if none was exceeded.
    """

    __slots__ = ("limit_error",)

    def __init__(self) -> None:
        self.limit_error: LimitExceededError | None = None

    def __repr__(self) -> str:
        return f"<corral LimitScope limit_error={self.limit_error!r}>"


@contextlib.contextmanager
def apply_limits(limits: list[Limit], catch_errors: bool = False) -> Iterator[LimitScope]:
    """Apply *limits* to the body of a ``with`` block.

    Args:
        limits: The limits to enter, in order (each may be entered only once).
        catch_errors: Whether to catch the :class:`LimitExceededError` of one
            of *limits* instead of letting it propagate; read it from the
            yielded scope's ``limit_error``. Errors of other limits (an
            enclosing one, the sample's) always propagate.

    Yields:
        A :class:`LimitScope`.

    Raises:
        TypeError: *limits* is not a list of :class:`Limit`, or *catch_errors*
            is not a ``bool``.
        LimitExceededError: One of *limits* was exceeded and *catch_errors* is false.

    **Cancellation:** as for each limit: the block is cancelled when one of
    them is exceeded. Not a checkpoint.
    """
    if not isinstance(limits, list | tuple):
        raise TypeError(f"limits must be a list of Limit, got {type_name(limits)}")
    for i, limit in enumerate(limits):
        if not isinstance(limit, Limit):
            raise TypeError(f"limits[{i}] must be a Limit, got {type_name(limit)}")
    check_bool("catch_errors", catch_errors)
    scope = LimitScope._create()
    try:
        with contextlib.ExitStack() as stack:
            for limit in limits:
                stack.enter_context(limit)
            yield scope
    except LimitExceededError as exc:
        if not any(exc.source is limit for limit in limits):
            raise
        scope.limit_error = exc
        if not catch_errors:
            raise


@final
@dataclass(frozen=True, slots=True)
class SampleLimits:
    """The limits of the running sample, from :func:`sample_limits`.

    Attributes:
        working: The sample's working limit (``limit`` is ``None`` without one).
        time: The sample's time limit (``limit`` is ``None`` without one).
    """

    working: Limit
    time: Limit


_sample_limits: ContextVar[SampleLimits | None] = ContextVar("corral.sample_limits", default=None)


def sample_limits() -> SampleLimits:
    """Return the limits of the running sample, with their live usage.

    This is not a checkpoint.

    Raises:
        RuntimeError: No sample is running in this context.
    """
    limits = _sample_limits.get()
    if limits is None:
        raise RuntimeError(
            "sample_limits() must be called inside a sample: async with task.sample(...)"
        )
    return limits


class _SampleLimitExceededError(LimitExceededError, TimeoutError):
    """A sample's own limit: the ``TimeoutError`` that ``task.sample()`` raised before limits."""


@contextlib.contextmanager
def sample_limit_scope(
    sample_id: int | str, time: float | None, working: float | None
) -> Iterator[SampleLimits]:
    """The sample's time limit (outermost) and working limit, for :func:`sample_limits`.

    Raises:
        TimeoutError: One of them was exceeded (the error is also a
            :class:`LimitExceededError` whose ``source`` is that limit).
    """
    limits = SampleLimits(working=_WorkingLimit(working), time=_TimeLimit(time))
    token = _sample_limits.set(limits)
    try:
        with limits.time, limits.working:
            yield limits
    except LimitExceededError as exc:
        source = exc.source
        if source is not limits.time and source is not limits.working:
            raise
        raise _SampleLimitExceededError(
            "time" if source is limits.time else "working",
            value=exc.value,
            limit=exc.limit,
            message=f"sample {sample_id!r} exceeded its {exc.type} limit of {exc.limit:g} seconds",
            source=source,
        ) from None
    finally:
        _sample_limits.reset(token)
