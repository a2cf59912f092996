"""What ``corral demo`` shows while it runs: a live view, one line per sample, or nothing.

* :class:`ActionTracker` learns which traced action each running sample is
  in (``Sandbox: exec ...``, ``Subprocess: ...``, ``Subtask: grade``) from the
  runtime's own ``TRACE`` records: it is a :class:`logging.Handler` on the
  ``corral`` logger, and tells the samples apart by :data:`SAMPLE_ID`, a
  context variable the demo sets in each sample's task (records are handled
  synchronously, in the context of the code that traced them). No hook in
  the runtime is needed.
* :class:`LiveView` is the live display (``full``, ``rich`` and
  ``conversation``): the task's progress with rich's ``Progress`` columns
  (done / total, percent, rate, ETA), the samples running now with the
  action each is in and for how long, the limits in use, and the latest
  errors with their sample ids.
* :class:`PlainView` (``plain`` and ``log``) draws nothing live and prints one
  line per finished sample; :class:`NoView` (``none``) prints nothing.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from rich.console import Console, Group
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from corral.tracing._actions import TRACE

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from rich.console import ConsoleOptions, RenderableType, RenderResult
    from rich.progress import Task

__all__ = [
    "LIVE_DISPLAYS",
    "SAMPLE_ID",
    "ActionTracker",
    "LiveView",
    "NoView",
    "PlainView",
    "View",
    "first_line",
]

#: The display types that draw a live view; ``plain`` and ``log`` print lines, ``none`` nothing.
LIVE_DISPLAYS = frozenset({"full", "rich", "conversation"})

#: The id of the sample whose code runs in this context (set by the demo in each sample's task).
SAMPLE_ID: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "corral_demo_sample_id", default=None
)

#: How many running samples the live view lists (the others are counted on one line).
MAX_RUNNING_ROWS = 8
#: How many of the latest errors the live view shows.
MAX_ERROR_ROWS = 3


def first_line(text: str) -> str:
    """The first non-empty line of *text*, stripped (``""`` if there is none)."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


class ActionTracker(logging.Handler):
    """The traced actions open in each sample, from the ``TRACE`` records of the runtime.

    Attach it with :meth:`attached`. A record whose context has no
    :data:`SAMPLE_ID` (the runtime's own tasks, the demo's display) is
    ignored. Safe to call from any thread.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(TRACE)
        self._clock = clock
        self._open: dict[int, dict[str, tuple[str, float]]] = {}
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        """Note an action entered or left by a sample."""
        try:
            sample = SAMPLE_ID.get()
            trace_id = getattr(record, "trace_id", None)
            event = getattr(record, "event", None)
            if sample is None or trace_id is None or event is None:
                return
            with self._guard:
                actions = self._open.setdefault(sample, {})
                if event == "enter":
                    fields = record.__dict__
                    label = f"{fields.get('action', '?')}: {fields.get('detail', '')}"
                    actions[str(trace_id)] = (label, self._clock())
                else:
                    actions.pop(str(trace_id), None)
        except Exception:
            self.handleError(record)

    def current(self, sample: int) -> tuple[str, float] | None:
        """The innermost action *sample* is in, and when it began (``None``: none)."""
        with self._guard:
            actions = self._open.get(sample)
            if not actions:
                return None
            return next(reversed(actions.values()))

    def forget(self, sample: int) -> None:
        """Drop what is known of *sample* (it has finished)."""
        with self._guard:
            self._open.pop(sample, None)

    @contextmanager
    def attached(self, logger: logging.Logger | None = None) -> Iterator[ActionTracker]:
        """Receive the ``TRACE`` records of *logger* (the ``corral`` logger) for the block."""
        target = logger if logger is not None else logging.getLogger("corral")
        target.addHandler(self)
        try:
            yield self
        finally:
            target.removeHandler(self)


class View(Protocol):
    """What the demo tells its display."""

    def started(self, id: int, time_limit: float | None = None) -> None:
        """Sample *id* holds its sandbox and runs (within *time_limit* seconds, if given)."""

    def finished(self, id: int, outcome: str, error: str | None, *, expected: bool) -> None:
        """Sample *id* ended with *outcome* (and *error*); *expected*: as it was designed to."""

    def set_limits(self, limits: dict[str, tuple[int, int]]) -> None:
        """The concurrency limits in use now: name to (in use, limit)."""


class NoView:
    """``--display none``: nothing is shown while the demo runs."""

    def started(self, id: int, time_limit: float | None = None) -> None:
        """Nothing to show."""

    def finished(self, id: int, outcome: str, error: str | None, *, expected: bool) -> None:
        """Nothing to show."""

    def set_limits(self, limits: dict[str, tuple[int, int]]) -> None:
        """Nothing to show."""


class PlainView(NoView):
    """``--display plain``: one line per finished sample, nothing live."""

    def __init__(
        self, console: Console, total: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._console = console
        self._total = total
        self._clock = clock
        self._since: dict[int, float] = {}
        self._done = 0

    def started(self, id: int, time_limit: float | None = None) -> None:
        """Note when sample *id* started."""
        self._since[id] = self._clock()

    def finished(self, id: int, outcome: str, error: str | None, *, expected: bool) -> None:
        """Print ``sample ID: OUTCOME [as designed] in S s (done/total)[: error]``."""
        self._done += 1
        since = self._since.pop(id, None)
        took = "" if since is None else f" in {self._clock() - since:.2f} s"
        designed = " (as designed)" if expected and outcome != "ok" else ""
        line = f"sample {id}: {outcome}{designed}{took} ({self._done}/{self._total})"
        if error is not None:
            line += f": {first_line(error)}"
        self._console.print(line, markup=False, highlight=False, soft_wrap=True)


class _RateColumn(ProgressColumn):
    """Samples finished per second."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None:
            return Text("-- samples/s", style="progress.data.speed")
        return Text(f"{speed:.1f} samples/s", style="progress.data.speed")


@dataclass
class _Error:
    id: int
    line: str
    expected: bool


class LiveView(NoView):
    """The live display: progress, running samples and their actions, limits, errors.

    Render it (it is a rich renderable) in a ``rich.live.Live``. *clock* is
    the time source of the progress columns and of the durations shown.
    """

    def __init__(
        self,
        title: str,
        total: int,
        tracker: ActionTracker | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._tracker = tracker
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=20),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            _RateColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TimeElapsedColumn(),
            auto_refresh=False,
            get_time=clock,
        )
        self._task = self.progress.add_task(title, total=total)
        self._running: dict[int, tuple[float, float | None]] = {}
        self._errors: deque[_Error] = deque(maxlen=MAX_ERROR_ROWS)
        self._error_count = 0
        self._limits: dict[str, tuple[int, int]] = {}

    def started(self, id: int, time_limit: float | None = None) -> None:
        """Show sample *id* among the running ones, with its *time_limit*."""
        self._running[id] = (self._clock(), time_limit)

    def finished(self, id: int, outcome: str, error: str | None, *, expected: bool) -> None:
        """Count sample *id* as done; show its error, if any."""
        self._running.pop(id, None)
        if self._tracker is not None:
            self._tracker.forget(id)
        self.progress.advance(self._task)
        if error is not None:
            self._error_count += 1
            self._errors.append(_Error(id, first_line(error), expected))

    def set_limits(self, limits: dict[str, tuple[int, int]]) -> None:
        """Show *limits*."""
        self._limits = dict(limits)

    def _running_table(self, width: int) -> Table:
        now = self._clock()
        table = Table(box=None, padding=(0, 1), show_edge=False, expand=False)
        table.add_column("sample", justify="right", no_wrap=True, min_width=6)
        # The action gives way: the sample and the time stay whole at any width.
        action_width = max(8, width - 6 - 8 - 10 - 6)
        table.add_column("action", no_wrap=True, overflow="ellipsis", max_width=action_width)
        table.add_column("for", justify="right", no_wrap=True, min_width=6)
        table.add_column("of", justify="right", no_wrap=True)
        for id, (since, limit) in list(self._running.items())[:MAX_RUNNING_ROWS]:
            current = self._tracker.current(id) if self._tracker is not None else None
            if current is None:
                label, began = Text("running", style="dim"), since
            else:
                label, began = Text(current[0]), current[1]
            # The sample's own time, against its time limit.
            of = "" if limit is None else f"{now - since:.1f}/{limit:g}s"
            table.add_row(str(id), label, f"{max(0.0, now - began):.1f}s", Text(of, style="dim"))
        return table

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        """Render the view to fit *options*' width."""
        yield self._group(options.max_width)

    def _group(self, width: int) -> Group:
        parts: list[RenderableType] = [self.progress.get_renderable()]
        running = len(self._running)
        if running:
            parts.append(Text(f"running: {running}", style="bold"))
            parts.append(self._running_table(width))
            if running > MAX_RUNNING_ROWS:
                parts.append(Text(f"  ... and {running - MAX_RUNNING_ROWS} more", style="dim"))
        limits = Text("limits:", style="bold", no_wrap=True, overflow="ellipsis")
        for name, (in_use, limit) in sorted(self._limits.items()):
            limits.append(f"  {name} {in_use}/{limit}", style="")
        if not self._limits:
            limits.append("  none in use", style="dim")
        parts.append(limits)
        if self._errors:
            parts.append(Text(f"errors: {self._error_count}", style="bold"))
            for error in self._errors:
                note = " (as designed)" if error.expected else ""
                line = Text(
                    f"  sample {error.id}{note}: {error.line}",
                    style="yellow" if error.expected else "red",
                    no_wrap=True,
                    overflow="ellipsis",
                )
                parts.append(line)
        return Group(*parts)
