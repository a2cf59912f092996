"""Working time: the wall time of a scope less the time it spent waiting.

A scope that measures working time (a sample, a ``working_limit()`` block)
runs its body with a :class:`WorkingClock` added to the context's chain of
clocks (:func:`measured`). Code that waits for something other than its own
work (a concurrency slot, a sandbox slot, ``suspend_working_limit()``) opens
a :func:`waiting` block, which every clock in its context's chain counts as
waiting. Tasks started inside a scope inherit its chain, so a wait anywhere
inside the scope counts for it; waits outside it do not. Overlapping waits
are merged: the scope is waiting while at least one of them is open, and that
time counts once.

The clock never polls. When the scope starts or stops waiting the clock
calls its ``on_change`` callback, which a limit uses to push its cancel
scope's deadline out of reach (waiting) or back to ``now + remaining``
(working again). The primitives that wait read the chain from a context
variable and never import the scopes that write it.
"""

from __future__ import annotations

import contextlib
import math
from contextvars import ContextVar
from typing import TYPE_CHECKING, final

import anyio

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = ["WorkingClock", "measured", "waiting"]


@final
class WorkingClock:
    """The working time of one scope, on the event loop's clock.

    Made by the scope that measures it, started when made and stopped by
    :func:`measured` when the scope's body ends.
    """

    __slots__ = ("_end", "_on_change", "_start", "_wait_start", "_waited", "_waits")

    def __init__(self, on_change: Callable[[], None] | None = None) -> None:
        self._on_change = on_change
        self._start = anyio.current_time()
        self._end: float | None = None
        self._waits = 0  # open waits
        self._wait_start = 0.0  # when the scope last started waiting
        self._waited = 0.0  # closed waiting time

    def __repr__(self) -> str:
        state = "stopped" if self._end is not None else "waiting" if self._waits else "working"
        return f"<WorkingClock {state}, {self.usage():.3f} s working>"

    @property
    def waiting(self) -> bool:
        """Whether the scope is waiting now (a wait inside it is open)."""
        return self._waits > 0

    def usage(self) -> float:
        """Seconds of working time so far (or up to the stop)."""
        now = self._end if self._end is not None else anyio.current_time()
        waited = self._waited + (now - self._wait_start if self._waits else 0.0)
        return max(0.0, (now - self._start) - waited)

    def deadline(self, limit: float) -> float:
        """The loop time at which working time reaches *limit*, if the scope keeps working.

        ``inf`` while the scope is waiting: its working time does not grow.
        """
        if self._waits:
            return math.inf
        return anyio.current_time() + (limit - self.usage())

    def stop(self) -> None:
        """Freeze the clock: later waits and ``usage()`` calls see the time of the stop."""
        if self._end is not None:
            return
        self._end = now = anyio.current_time()
        if self._waits:
            self._waited += now - self._wait_start
            self._waits = 0

    def _open_wait(self) -> None:
        if self._end is not None:
            return
        self._waits += 1
        if self._waits == 1:
            self._wait_start = anyio.current_time()
            self._changed()

    def _close_wait(self) -> None:
        if self._end is not None or not self._waits:
            return
        self._waits -= 1
        if not self._waits:
            self._waited += anyio.current_time() - self._wait_start
            self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()


#: The clocks of the scopes the current context runs inside, outermost first.
_clocks: ContextVar[tuple[WorkingClock, ...]] = ContextVar("corral.working_clocks", default=())


@contextlib.contextmanager
def measured(clock: WorkingClock) -> Iterator[WorkingClock]:
    """Count the waits of the block (and of tasks started in it) on *clock*; stop it at the end."""
    token = _clocks.set((*_clocks.get(), clock))
    try:
        yield clock
    finally:
        _clocks.reset(token)
        clock.stop()


@contextlib.contextmanager
def waiting() -> Iterator[None]:
    """Count the block as waiting, not working, for every scope it runs inside.

    Not a checkpoint. Outside any measured scope it does nothing.
    """
    clocks = _clocks.get()
    for clock in clocks:
        clock._open_wait()
    try:
        yield
    finally:
        for clock in clocks:
            clock._close_wait()
