"""Spans: named scopes in a transcript, recording what they changed in the store."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, TypeAlias, final

from anyio.lowlevel import checkpoint

from ..tracing._context import enter_span, leave
from ._events import SpanBeginEvent, SpanEndEvent, StoreEvent, current_span
from ._snapshot import Snapshot, diff, snapshot
from ._store import Store, current_store
from ._transcript import Transcript, current_transcript

if TYPE_CHECKING:
    from collections.abc import Iterator
    from contextvars import Token
    from types import TracebackType

    from ..tracing._context import TraceContext

__all__ = ["SpanIdProvider", "span", "span_id_provider"]

#: ``await provider(name, parent_id, requested_id)`` gives the id of a new span.
SpanIdProvider: TypeAlias = Callable[[str, str | None, str | None], Awaitable[str]]

_span_id_provider: ContextVar[SpanIdProvider | None] = ContextVar(
    "corral_span_id_provider", default=None
)

logger = logging.getLogger("corral.state")


@final
class _Span:
    __slots__ = (
        "_before",
        "_id",
        "_name",
        "_requested",
        "_store",
        "_token",
        "_trace_token",
        "_transcript",
        "_type",
    )

    def __init__(self, name: str, type: str | None, id: str | None) -> None:
        self._name = name
        self._type = type
        self._requested = id
        self._id = ""
        self._store: Store | None = None
        self._transcript: Transcript | None = None
        self._before: Snapshot | None = None
        self._token: object = None
        self._trace_token: Token[TraceContext] | None = None

    async def __aenter__(self) -> None:
        if self._store is not None:
            raise RuntimeError(f"span {self._name!r} is already in use; call span() again")
        parent = current_span.get()
        provider = _span_id_provider.get()
        if provider is not None:
            span_id = await provider(self._name, parent, self._requested)
            if not isinstance(span_id, str) or not span_id:
                raise TypeError(
                    f"the span id provider must return a non-empty str, got {span_id!r}"
                )
        else:
            await checkpoint()
            span_id = self._requested or uuid.uuid4().hex
        self._id = span_id
        self._store = current_store.get()
        self._transcript = transcript = current_transcript.get()
        self._before = snapshot(self._store)
        transcript._event(
            SpanBeginEvent(
                id=span_id,
                span_id=span_id,
                parent_id=parent,
                type=self._type,
                name=self._name,
            )
        )
        self._token = current_span.set(span_id)
        self._trace_token = enter_span(span_id)  # trace records written inside name the span

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        store, transcript, before = self._store, self._transcript, self._before
        assert store is not None
        assert transcript is not None
        assert before is not None
        self._store = None
        failure: TypeError | None = None
        try:
            changes = diff(before, snapshot(store))
        except TypeError as exc:
            changes = []
            if exc_type is None:
                failure = exc
            else:
                # Never hide the body's own exception behind a recording error.
                logger.exception("could not record the store changes of span %r", self._name)
        try:
            if changes:
                transcript._event(StoreEvent(changes=changes))
            transcript._event(SpanEndEvent(id=self._id))
        finally:
            if self._trace_token is not None:
                leave(self._trace_token)
                self._trace_token = None
            current_span.reset(self._token)  # type: ignore[arg-type]
        if failure is not None:
            raise failure


def span(name: str, *, type: str | None = None, id: str | None = None) -> _Span:
    """Record a named span in the transcript, with what it changed in the store.

    ``async with span(name):`` records a ``SpanBeginEvent``, runs the body
    with the span as the current span (events recorded inside carry its id),
    then records a ``StoreEvent`` holding the JSON Patch of the store's
    changes (if any) and a ``SpanEndEvent``. The changes are recorded also
    when the body raises or is cancelled; the exception then propagates.

    Args:
        name: Name of the span.
        type: Kind of span (``"sample"``, ``"subtask"``, or your own).
        id: The span's id; a new unique one if ``None``. With a provider set by
            :func:`span_id_provider`, the provider is asked instead, given
            this as ``requested_id``.

    Raises:
        TypeError: *name*, *type* or *id* is not a ``str``, or the span id
            provider returned something else; or, on leaving, a store
            value was changed in place into something that is not
            JSON-serialisable (the message names the key).

    Entering is a checkpoint; leaving is not.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {name.__class__.__name__}")
    if type is not None and not isinstance(type, str):
        raise TypeError(f"type must be a str or None, got {type.__class__.__name__}")
    if id is not None and (not isinstance(id, str) or not id):
        raise TypeError(f"id must be a non-empty str or None, got {id!r}")
    return _Span(name, type, id)


@contextlib.contextmanager
def span_id_provider(provider: SpanIdProvider | None) -> Iterator[None]:
    """Let *provider* choose the ids of the spans entered inside the block.

    Each :func:`span` entered in the block (in this task and in tasks it
    starts) awaits ``provider(name, parent_id, requested_id)`` for its id;
    ``None`` turns a provider of an outer block off. For harnesses that need
    ids stable across runs (replays, branched trajectories).

    Raises:
        TypeError: *provider* is neither callable nor ``None``.
    """
    if provider is not None and not callable(provider):
        raise TypeError(f"provider must be callable or None, got {provider!r}")
    token = _span_id_provider.set(provider)
    try:
        yield
    finally:
        _span_id_provider.reset(token)
