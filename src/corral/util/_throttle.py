"""``throttle(seconds)``: call a sync function at most once per window, trailing edge.

The first call runs the function. Calls inside the window that follows do not
run it: they return the last result and remember their arguments (the latest
call wins). When the window ends, the remembered call runs, from a deferred
fire that corral schedules:

* inside a corral task scope, in the task's nursery (under trio and asyncio),
  so the scope waits for the trailing call before it exits;
* under asyncio outside any task, in a loop task (kept alive by a strong
  reference, and its errors logged);
* otherwise (trio outside a task, or no event loop), nowhere: a warning is
  logged once per throttled function, and the remembered call runs at the
  next call after the window.

Time is read from the running event loop's clock (``anyio.current_time()``),
so virtual clocks work; outside a loop, from ``time.monotonic()``. A call made
under a different clock from the previous one (another event loop run, a
worker thread, no loop) starts a new window.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
from time import monotonic
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

import anyio
import sniffio
from anyio.lowlevel import RunVar

from .._core._checks import check_seconds
from .._scope._task import current_task

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable

__all__ = ["throttle"]

P = ParamSpec("P")
R = TypeVar("R")

logger = logging.getLogger("corral.throttle")

#: One object per event loop run: it tells the clocks of two runs apart.
_run_clock: RunVar[object] = RunVar("corral.throttle.clock")
#: Loop tasks running deferred fires outside any corral task (asyncio only).
_loop_tasks: set[asyncio.Task[None]] = set()


def throttle(seconds: float) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a sync function so that it runs at most once every *seconds*.

    Trailing-edge semantics, as in ``inspect_ai.util.throttle``: the first call
    runs the function; calls during the following *seconds* return the last
    result and save their arguments as the pending call (the latest wins); when
    the window ends, the pending call runs. A call after the window while a
    call is still pending runs the pending call, and its own arguments become
    the new pending call.

    Unlike ``inspect_ai``, the trailing call also runs under trio: inside a
    corral task scope it is started in the task's nursery. Under asyncio
    outside any task it runs in a loop task. Under trio outside a task, or
    outside any event loop, nothing can run it: a warning is logged once per
    decorated function and the pending call runs at the next call after the
    window.

    The wrapper is a plain sync function and never a checkpoint. Before the
    function has returned once (for example when its first call raised), a
    throttled call returns ``None``.

    Args:
        seconds: The window, in seconds (finite, >= 0). ``0`` runs every call.

    Returns:
        A decorator for sync callables.

    Raises:
        TypeError: *seconds* is not a number; or, from the decorator, the
            decorated object is not callable or is an ``async`` function.
        ValueError: *seconds* is negative, NaN or infinite.

    **Cancellation:** the deferred fire waits in the task's nursery, so the
    task scope stays open for at most *seconds* after the last throttled call
    to run it. If the task is cancelled first, the pending call does not run
    then; it stays pending and runs at the next call after the window. An
    exception raised by the function in the deferred fire propagates into the
    task scope like any failure of work started in it (outside a task it is
    logged).
    """
    if seconds is None:
        raise TypeError("seconds must be a number of seconds, got None")
    window = check_seconds("seconds", seconds, finite=True)
    assert window is not None

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        if not callable(func):
            raise TypeError(f"throttle() decorates a callable, got {type(func).__name__}")
        name = getattr(func, "__qualname__", None) or repr(func)
        if inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func):
            raise TypeError(
                f"throttle() decorates sync functions, and {name} is async; "
                "throttle a sync function that the async code calls instead"
            )
        state = _Throttled(func, window, name)

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            return state.call(args, kwargs)

        return wrapper

    return decorate


def _clock() -> tuple[object | None, float]:
    """Return ``(clock identity, now)``: the loop's clock in a loop, else monotonic."""
    try:
        sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return None, monotonic()
    clock = _run_clock.get(None)
    if clock is None:
        clock = object()
        _run_clock.set(clock)
    return clock, anyio.current_time()


class _Throttled(Generic[P, R]):
    """The state of one throttled function."""

    def __init__(self, func: Callable[P, R], seconds: float, name: str) -> None:
        self._func = func
        self._seconds = seconds
        self._name = name
        self._lock = threading.Lock()
        # Clock identity and time of the last run; None before the first.
        self._clock: object | None = None
        self._last: float | None = None
        # Bumped at every run, so a deferred fire knows whether the window it
        # slept out is still the current one.
        self._window = 0
        self._result: R | None = None
        self._pending: tuple[tuple[Any, ...], dict[str, Any]] | None = None
        # The token of the scheduled deferred fire, if any; only its owner clears it.
        self._deferred: object | None = None
        self._warned = False

    def _expired(self, clock: object | None, now: float) -> bool:
        return self._last is None or clock is not self._clock or now - self._last >= self._seconds

    def _start_window(self, clock: object | None, now: float) -> None:
        self._clock = clock
        self._last = now
        self._window += 1

    def call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> R:
        clock, now = _clock()
        with self._lock:
            if self._expired(clock, now):
                # A call still pending runs first; this one waits its turn.
                run, self._pending = (
                    ((args, kwargs), None)
                    if self._pending is None
                    else (self._pending, (args, kwargs))
                )
                self._start_window(clock, now)
            else:
                run = None
                self._pending = (args, kwargs)
            token = None
            if self._pending is not None and self._deferred is None:
                token = self._deferred = object()
        if token is not None and not self._schedule(token):
            self._release(token)
            self._warn()
        if run is not None:
            self._result = self._func(*run[0], **run[1])
        return self._result  # type: ignore[return-value]

    def _release(self, token: object) -> None:
        with self._lock:
            if self._deferred is token:
                self._deferred = None

    def _schedule(self, token: object) -> bool:
        """Start the deferred fire; return False when nothing can run it."""
        try:
            library = sniffio.current_async_library()
        except sniffio.AsyncLibraryNotFoundError:
            return False
        task = current_task()
        if task is not None:
            try:
                task.start_soon(self._fire_deferred, token, name=f"throttle({self._name})")
            except RuntimeError:
                pass  # the task is closing; try the fallback
            else:
                return True
        if library == "asyncio":
            import asyncio

            loop_task = asyncio.get_running_loop().create_task(
                self._fire_deferred(token), name=f"throttle({self._name})"
            )
            _loop_tasks.add(loop_task)
            loop_task.add_done_callback(functools.partial(self._loop_task_done, token))
            return True
        return False

    def _loop_task_done(self, token: object, loop_task: asyncio.Task[None]) -> None:
        _loop_tasks.discard(loop_task)
        # A loop task cancelled before its first step (at loop shutdown) never ran.
        self._release(token)
        if not loop_task.cancelled() and (exc := loop_task.exception()) is not None:
            logger.error("throttled %s raised in its trailing call", self._name, exc_info=exc)

    def _warn(self) -> None:
        if self._warned:
            return
        self._warned = True
        logger.warning(
            "throttle(%s): no corral task is running (or no event loop), so the trailing "
            "call cannot be scheduled and may be lost; it runs at the next call after the "
            "window. Call it inside `async with corral.task(...)` to have it run on time.",
            self._name,
        )

    async def _fire_deferred(self, token: object) -> None:
        slept_out: int | None = None
        try:
            while True:
                clock, now = _clock()
                with self._lock:
                    pending = self._pending
                    if pending is None:
                        if self._deferred is token:
                            self._deferred = None
                        return
                    remaining = 0.0
                    if slept_out != self._window and not self._expired(clock, now):
                        assert self._last is not None
                        remaining = self._seconds - (now - self._last)
                        slept_out = self._window
                    else:
                        self._pending = None
                        self._start_window(clock, now)
                if remaining > 0:
                    await anyio.sleep(remaining)
                else:
                    self._result = self._func(*pending[0], **pending[1])
        except BaseException:
            self._release(token)
            raise
