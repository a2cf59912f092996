"""Sample scopes: ``task.sample(...)`` and the :class:`Sample` it yields.

Inside a sample, :func:`store` and :func:`transcript` resolve to the sample's
own, through context variables, so concurrent samples never see each other's
state. The sample scope is itself a span (type ``"sample"``), so every change
a sample makes to its store is recorded at least once.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, final

import anyio
from pydantic import BaseModel, ConfigDict, Field, JsonValue
from pydantic_core import PydanticSerializationError, to_jsonable_python

from .._util import NoPublicConstructor
from ._changes import Snapshot, diff, snapshot
from ._events import Event, StoreEvent, current_span, sample_started
from ._span import _Span, span
from ._store import Store, current_store
from ._transcript import Transcript, current_transcript

if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import AbstractAsyncContextManager
    from contextvars import Token
    from types import TracebackType

__all__ = ["Sample", "SampleLog", "open_sample"]


class SampleLog(BaseModel):
    """A finished (or running) sample as data: what :meth:`Sample.log` returns.

    It writes to and reads back from JSON without loss; ``store`` holds the
    store's JSON, which :func:`store_from_events` rebuilds from ``events``.
    """

    model_config = ConfigDict(extra="forbid")

    id: int | str
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    store: dict[str, JsonValue] = Field(default_factory=dict)
    events: list[Event] = Field(default_factory=list)

    def write_json(self, path: str | Path) -> None:
        """Write the log to *path* as JSON."""
        Path(path).write_text(self.model_dump_json(indent=2))

    @classmethod
    def read_json(cls, path: str | Path) -> SampleLog:
        """Read a log written by :meth:`write_json`.

        Raises:
            pydantic.ValidationError: The file is not a valid sample log.
        """
        return cls.model_validate_json(Path(path).read_bytes())


@final
class Sample(metaclass=NoPublicConstructor):
    """A running sample; get one from ``task.sample(...)``.

    Attributes:
        id: The sample's id.
        metadata: The sample's metadata.
        store: The sample's :class:`Store`.
        transcript: The sample's :class:`Transcript`.
    """

    def __init__(
        self, id: int | str, metadata: dict[str, Any], store: Store, transcript: Transcript
    ) -> None:
        self.id = id
        self.metadata = metadata
        self.store = store
        self.transcript = transcript

    def __repr__(self) -> str:
        return f"<corral Sample {self.id!r}>"

    def log(self) -> SampleLog:
        """Return the sample's id, metadata, store and events as a :class:`SampleLog`.

        Raises:
            TypeError: A store value was changed in place into something that
                is not JSON-serialisable (the message names the key).
        """
        return SampleLog(
            id=self.id,
            metadata=self.metadata,
            store=snapshot(self.store).tree,
            events=list(self.transcript.events),
        )


@final
class _SampleScope:
    """The async context manager returned by ``task.sample()``."""

    __slots__ = ("_deadline", "_sample", "_sandboxes", "_scope", "_span", "_time_limit", "_tokens")

    def __init__(
        self,
        sample: Sample,
        sandboxes: AbstractAsyncContextManager[object] | None = None,
        time_limit: float | None = None,
    ) -> None:
        self._sample = sample
        self._sandboxes = sandboxes
        self._time_limit = time_limit
        self._scope: anyio.CancelScope | None = None
        self._span: _Span | None = None
        self._tokens: (
            tuple[Token[Store], Token[Transcript], Token[float | None], Token[str | None]] | None
        ) = None

    async def __aenter__(self) -> Sample:
        sample = self._sample
        if self._tokens is not None or sample.transcript.events:
            raise RuntimeError(f"sample {sample.id!r} has already been entered")
        if self._time_limit is not None:
            # Cancels the sample's body (and its sandbox set-up) at the limit;
            # __aexit__ turns that into TimeoutError once the cleanup has run.
            self._scope = anyio.CancelScope(deadline=anyio.current_time() + self._time_limit)
            self._scope.__enter__()
        self._tokens = (
            current_store.set(sample.store),
            current_transcript.set(sample.transcript),
            sample_started.set(time.monotonic()),
            # The sample's transcript has a span tree of its own.
            current_span.set(None),
        )
        try:
            # Record the initial contents, so that the store rebuilt from the
            # transcript equals the live one.
            initial = diff(Snapshot({}), snapshot(sample.store))
            if initial:
                sample.transcript._event(StoreEvent(changes=initial))
            if self._sandboxes is not None:
                await self._sandboxes.__aenter__()
            self._span = span(f"sample {sample.id}", type="sample")
            try:
                await self._span.__aenter__()
            except BaseException as exc:
                if self._sandboxes is not None:
                    await self._sandboxes.__aexit__(type(exc), exc, exc.__traceback__)
                raise
        except BaseException as exc:
            self._reset()
            if self._scope is not None:
                self._scope.__exit__(type(exc), exc, exc.__traceback__)
                if self._scope.cancelled_caught:
                    raise self._timeout() from None
            raise
        return sample

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._span is not None
        try:
            try:
                await self._span.__aexit__(exc_type, exc_value, traceback)
            finally:
                if self._sandboxes is not None:
                    await self._sandboxes.__aexit__(exc_type, exc_value, traceback)
        finally:
            self._reset()
        if self._scope is not None:
            self._scope.__exit__(exc_type, exc_value, traceback)
            if self._scope.cancelled_caught:
                raise self._timeout() from None

    def _timeout(self) -> TimeoutError:
        return TimeoutError(
            f"sample {self._sample.id!r} exceeded its time limit of {self._time_limit:g} seconds"
        )

    def _reset(self) -> None:
        assert self._tokens is not None
        store_token, transcript_token, started_token, span_token = self._tokens
        current_span.reset(span_token)
        sample_started.reset(started_token)
        current_transcript.reset(transcript_token)
        current_store.reset(store_token)


def open_sample(
    id: int | str,
    metadata: dict[str, Any] | None,
    store: Store | dict[str, Any] | None,
    sandboxes: Callable[[dict[str, Any]], AbstractAsyncContextManager[object]] | None = None,
    time_limit: float | None = None,
) -> _SampleScope:
    """Check the arguments of ``task.sample()`` and return its context manager."""
    if isinstance(id, bool) or not isinstance(id, (int, str)):
        raise TypeError(f"id must be an int or a str, got {type(id).__name__}")
    if metadata is None:
        metadata = {}
    elif not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict or None, got {type(metadata).__name__}")
    else:
        try:
            to_jsonable_python(metadata)
        except PydanticSerializationError as exc:
            raise TypeError(f"metadata must be JSON-serialisable: {exc}") from None
    if store is None or isinstance(store, dict):
        sample_store = Store(store)
    elif isinstance(store, Store):
        sample_store = store
    else:
        raise TypeError(f"store must be a Store, a dict or None, got {type(store).__name__}")
    sample = Sample._create(id, metadata, sample_store, Transcript())
    owned = sandboxes({**metadata, "__sample_id__": id}) if sandboxes is not None else None
    return _SampleScope(sample, owned, time_limit)
