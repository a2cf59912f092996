"""Transcripts: the ordered record of what happened in a sample.

:func:`transcript` returns the running sample's transcript (subtasks have
their own), or one process-wide transcript outside any sample. A transcript
serialises to JSON and back without loss, whole (:meth:`Transcript.to_json`) or
one event per line (:meth:`Transcript.write_jsonl`, :meth:`Transcript.iter_jsonl`),
which keeps memory flat however many events a sample recorded.
"""

from __future__ import annotations

import functools
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import JsonValue, TypeAdapter

from ._events import BaseEvent, Event, InfoEvent

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence

__all__ = ["Transcript", "transcript"]


@functools.cache
def _events_adapter() -> TypeAdapter[list[Event]]:
    """The adapter for a list of events, built on first use (building it costs ~10 ms)."""
    return TypeAdapter(list[Event])


@functools.cache
def _event_adapter() -> TypeAdapter[Event]:
    """The adapter for one event, built on first use."""
    return TypeAdapter(Event)


def _with_uuid(build: Callable[[], Event], uuid: str) -> Event:
    """The event *build* returns, with the id it was given when first built."""
    event = build()
    event.uuid = uuid
    return event


class Transcript:
    """An ordered list of events.

    Args:
        events: Events to start with (for example, read back from a file).
    """

    __slots__ = ("_events", "_unbuilt")

    def __init__(self, events: Iterable[Event] | None = None) -> None:
        # Events, or functions that build them (see _event_later).
        self._events: list[Event | Callable[[], Event]] = list(events) if events is not None else []
        self._unbuilt = False

    def __repr__(self) -> str:
        return f"<Transcript with {len(self._events)} events>"

    @property
    def events(self) -> Sequence[Event]:
        """The events so far, oldest first (a read-only view)."""
        return tuple(self._built())

    def _built(self) -> list[Event]:
        """The events, building those recorded by :meth:`_event_later` now."""
        if self._unbuilt:
            self._events = [e if isinstance(e, BaseEvent) else e() for e in self._events]
            self._unbuilt = False
        return self._events  # type: ignore[return-value]  # all built above

    def info(self, data: JsonValue, *, source: str | None = None) -> None:
        """Record an :class:`InfoEvent` holding *data*.

        Raises:
            pydantic.ValidationError: *data* is not JSON data.
        """
        self._event(InfoEvent(data=data, source=source))

    def _event(self, event: Event) -> None:
        self._events.append(event)

    def _event_later(self, build: Callable[[], Event]) -> None:
        """Record the event *build* returns, building it when the events are read.

        For events recorded on a hot path (every sandbox call), whose fields
        are known to be valid: validation then costs nothing until someone
        looks. *build* must not depend on the context it is called in (pass
        ``span_id`` and ``working_start`` explicitly).
        """
        self._events.append(build)
        self._unbuilt = True

    def to_json(self, *, indent: int | None = None) -> str:
        """Serialise the events as a JSON array."""
        return _events_adapter().dump_json(self._built(), indent=indent).decode()

    @classmethod
    def from_json(cls, data: str | bytes) -> Transcript:
        """Read a transcript serialised by :meth:`to_json`.

        Raises:
            pydantic.ValidationError: *data* is not a valid transcript.
        """
        return cls(_events_adapter().validate_json(data))

    def write_json(self, path: str | Path) -> None:
        """Write :meth:`to_json` to *path*."""
        Path(path).write_text(self.to_json(indent=2))

    @classmethod
    def read_json(cls, path: str | Path) -> Transcript:
        """Read a transcript written by :meth:`write_json`."""
        return cls.from_json(Path(path).read_bytes())

    def write_jsonl(self, path: str | Path) -> int:
        """Write the events to *path* as JSON Lines, one event per line; return how many.

        Each event is serialised and written on its own, and an event recorded
        on a hot path (a sandbox call) is built for its line only, not kept:
        memory stays flat however many events there are. Blocking file I/O.
        """
        adapter = _event_adapter()
        events = self._events
        with Path(path).open("wb") as out:
            for index, item in enumerate(events):
                if isinstance(item, BaseEvent):
                    event = item
                else:
                    event = item()
                    # Built again when read, it must keep the id written here.
                    events[index] = functools.partial(_with_uuid, item, event.uuid)
                out.write(adapter.dump_json(event))
                out.write(b"\n")
        return len(events)

    @staticmethod
    def iter_jsonl(path: str | Path) -> Iterator[Event]:
        """The events of a file written by :meth:`write_jsonl`, read one line at a time.

        Raises:
            pydantic.ValidationError: A line is not a valid event.
        """
        adapter = _event_adapter()
        with Path(path).open("rb") as lines:
            for line in lines:
                if line.strip():
                    yield adapter.validate_json(line)

    @classmethod
    def read_jsonl(cls, path: str | Path) -> Transcript:
        """Read a transcript written by :meth:`write_jsonl` (every event in memory).

        Raises:
            pydantic.ValidationError: A line is not a valid event.
        """
        return cls(cls.iter_jsonl(path))


_default_transcript = Transcript()
current_transcript: ContextVar[Transcript] = ContextVar(
    "corral.transcript", default=_default_transcript
)


def transcript() -> Transcript:
    """Return the running sample's (or subtask's) transcript.

    Outside any sample, one process-wide transcript. This is not a checkpoint.
    """
    return current_transcript.get()
