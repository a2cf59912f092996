"""Where a trace record happened: the task, sample and span it was written in.

Tracing sits below the scopes, so it cannot ask them; instead the scopes tell
it. A task scope calls :func:`enter_task`, a sample scope :func:`enter_sample`,
a span :func:`enter_span`, each on entry (and :func:`leave` with the token on
exit). They set one context variable, so the place follows tasks started
inside a scope, and concurrent samples each see their own.

Every record the trace file handler writes carries the three fields, ``null``
where there is none: ``task`` (the innermost task's name), ``sample_id`` (the
innermost sample's id, an int or a str) and ``span_id`` (the innermost span's
id, inside or outside a sample). A sample scope starts with no span (its own
span is entered just inside it). The JSON text of the fields is built once per
scope, not per record.
"""

from __future__ import annotations

import contextlib
import json
from contextvars import ContextVar, Token
from typing import Final, final

__all__ = [
    "CONTEXT_FIELDS",
    "TraceContext",
    "current_context",
    "enter_sample",
    "enter_span",
    "enter_task",
    "leave",
]

#: The keys every record gets, in the order they are written.
CONTEXT_FIELDS: Final = ("task", "sample_id", "span_id")

_quote = json.encoder.encode_basestring


def _json(value: int | str | None) -> str:
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    return _quote(value)


@final
class TraceContext:
    """The task, sample and span a record is written in (each ``None`` outside one)."""

    __slots__ = ("json", "sample_id", "span_id", "task")

    def __init__(self, task: str | None, sample_id: int | str | None, span_id: str | None) -> None:
        self.task = task
        self.sample_id = sample_id
        self.span_id = span_id
        #: ``"task": ..., "sample_id": ..., "span_id": ...`` (no braces, no leading comma).
        self.json = (
            f'"task": {_json(task)}, "sample_id": {_json(sample_id)}, "span_id": {_json(span_id)}'
        )

    def __repr__(self) -> str:
        return (
            f"TraceContext(task={self.task!r}, sample_id={self.sample_id!r}, "
            f"span_id={self.span_id!r})"
        )

    def fields(self) -> dict[str, int | str | None]:
        """The fields as a dict, in :data:`CONTEXT_FIELDS` order."""
        return {"task": self.task, "sample_id": self.sample_id, "span_id": self.span_id}


NOWHERE: Final = TraceContext(None, None, None)

_context: ContextVar[TraceContext] = ContextVar("corral.tracing.context", default=NOWHERE)


def current_context() -> TraceContext:
    """The place of a record written now, in this task or thread. Not a checkpoint."""
    return _context.get()


def enter_task(name: str) -> Token[TraceContext]:
    """Records written from here (in this context) carry task *name*; sample and span stay."""
    here = _context.get()
    return _context.set(TraceContext(name, here.sample_id, here.span_id))


def enter_sample(sample_id: int | str) -> Token[TraceContext]:
    """Records carry *sample_id*, and no span until the sample's first span is entered."""
    return _context.set(TraceContext(_context.get().task, sample_id, None))


def enter_span(span_id: str) -> Token[TraceContext]:
    """Records carry *span_id*; the task and sample stay."""
    here = _context.get()
    return _context.set(TraceContext(here.task, here.sample_id, span_id))


def leave(token: Token[TraceContext]) -> None:
    """Undo the ``enter_*`` call that returned *token*.

    Left in another context than the one it was entered in (an async
    generator finalised elsewhere), the place is left as it is.
    """
    with contextlib.suppress(ValueError):
        _context.reset(token)
