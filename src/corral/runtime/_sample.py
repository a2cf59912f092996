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

from pydantic import BaseModel, ConfigDict, Field, JsonValue
from pydantic_core import PydanticSerializationError, to_jsonable_python

from .._util import NoPublicConstructor
from ._changes import Snapshot, diff, snapshot
from ._events import Event, StoreEvent, current_span, sample_started
from ._span import _Span, span
from ._store import Store, current_store
from ._transcript import Transcript, current_transcript

if TYPE_CHECKING:
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

    __slots__ = ("_sample", "_span", "_tokens")

    def __init__(self, sample: Sample) -> None:
        self._sample = sample
        self._span: _Span | None = None
        self._tokens: (
            tuple[Token[Store], Token[Transcript], Token[float | None], Token[str | None]] | None
        ) = None

    async def __aenter__(self) -> Sample:
        sample = self._sample
        if self._tokens is not None or sample.transcript.events:
            raise RuntimeError(f"sample {sample.id!r} has already been entered")
        self._tokens = (
            current_store.set(sample.store),
            current_transcript.set(sample.transcript),
            sample_started.set(time.monotonic()),
            # The sample's transcript has a span tree of its own.
            current_span.set(None),
        )
        # Record the initial contents, so that the store rebuilt from the
        # transcript equals the live one.
        initial = diff(Snapshot({}), snapshot(sample.store))
        if initial:
            sample.transcript._event(StoreEvent(changes=initial))
        self._span = span(f"sample {sample.id}", type="sample")
        try:
            await self._span.__aenter__()
        except BaseException:
            self._reset()
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
            await self._span.__aexit__(exc_type, exc_value, traceback)
        finally:
            self._reset()

    def _reset(self) -> None:
        assert self._tokens is not None
        store_token, transcript_token, started_token, span_token = self._tokens
        current_span.reset(span_token)
        sample_started.reset(started_token)
        current_transcript.reset(transcript_token)
        current_store.reset(store_token)


def open_sample(
    id: int | str, metadata: dict[str, Any] | None, store: Store | dict[str, Any] | None
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
    return _SampleScope(Sample._create(id, metadata, sample_store, Transcript()))
