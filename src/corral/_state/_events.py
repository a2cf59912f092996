"""Transcript events: pydantic models with a literal ``event`` field naming the kind.

Every event carries ``uuid``, ``span_id`` (the span it was recorded in),
``timestamp`` (UTC) and ``working_start`` (seconds since the sample began).
:data:`Event` is the discriminated union of all kinds, so a list of events
serialises to JSON and validates back without loss.
"""

from __future__ import annotations

import os
import time
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

__all__ = [
    "BaseEvent",
    "Event",
    "InfoEvent",
    "InputEvent",
    "JsonChange",
    "SandboxEvent",
    "SpanBeginEvent",
    "SpanEndEvent",
    "StoreEvent",
    "SubtaskEvent",
    "current_span_id",
]

#: The span new events are recorded in; set by ``span()``.
current_span: ContextVar[str | None] = ContextVar("corral.span_id", default=None)
#: ``time.monotonic()`` when the running sample began; ``None`` outside a sample.
sample_started: ContextVar[float | None] = ContextVar("corral.sample_started", default=None)


_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


def current_span_id() -> str | None:
    """Return the id of the innermost running span, or ``None``."""
    return current_span.get()


def _new_uuid() -> str:
    # What uuid.uuid4().hex gives (random bits, version 4, RFC 4122 variant),
    # without building a UUID object: a third of the cost.
    return f"{int.from_bytes(os.urandom(16)) & _UUID4_CLEAR | _UUID4_SET:032x}"


def _now() -> datetime:
    return datetime.now(UTC)


def seconds_into_sample() -> float:
    """Seconds since the running sample began (0 outside a sample)."""
    started = sample_started.get()
    return 0.0 if started is None else time.monotonic() - started


class BaseEvent(BaseModel):
    """Fields every event has."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    uuid: str = Field(default_factory=_new_uuid)
    """Unique id of the event."""
    span_id: str | None = Field(default_factory=lambda: current_span.get())
    """Id of the span the event was recorded in."""
    timestamp: datetime = Field(default_factory=_now)
    """When the event was recorded (UTC)."""
    working_start: float = Field(default_factory=seconds_into_sample)
    """Seconds since the sample began."""
    metadata: dict[str, JsonValue] | None = None
    """Free-form data attached by the recorder."""


class JsonChange(BaseModel):
    """One RFC 6902 JSON Patch operation, as recorded in a :class:`StoreEvent`."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True, defer_build=True)

    op: Literal["remove", "add", "replace", "move", "test", "copy"]
    """The operation."""
    path: str
    """RFC 6901 pointer to the target (``/key/0/field``)."""
    from_: str | None = Field(default=None, alias="from")
    """Source pointer of ``move`` and ``copy``."""
    value: JsonValue = None
    """New value of ``add``, ``replace`` and ``test``."""
    replaced: JsonValue = None
    """Previous value at *path*, for ``replace``."""


class StoreEvent(BaseEvent):
    """Changes to the store during a span."""

    event: Literal["store"] = "store"
    changes: list[JsonChange]


class SpanBeginEvent(BaseEvent):
    """A span began."""

    event: Literal["span_begin"] = "span_begin"
    id: str
    parent_id: str | None = None
    type: str | None = None
    name: str


class SpanEndEvent(BaseEvent):
    """A span ended."""

    event: Literal["span_end"] = "span_end"
    id: str


class InfoEvent(BaseEvent):
    """Information recorded with ``transcript().info()``."""

    event: Literal["info"] = "info"
    source: str | None = None
    data: JsonValue


class InputEvent(BaseEvent):
    """Input typed by a user at an ``input_screen()``."""

    event: Literal["input"] = "input"
    input: str
    input_ansi: str


class SandboxEvent(BaseEvent):
    """A call to a sandbox: exec, read_file or write_file."""

    event: Literal["sandbox"] = "sandbox"
    action: Literal["exec", "read_file", "write_file"]
    cmd: str | None = None
    options: dict[str, JsonValue] | None = None
    file: str | None = None
    input: str | None = None
    result: int | None = None
    output: str | None = None
    completed: datetime | None = None


class SubtaskEvent(BaseEvent):
    """A subtask call, with the subtask's own transcript in ``events``."""

    event: Literal["subtask"] = "subtask"
    name: str
    type: str | None = None
    input: dict[str, JsonValue] = Field(default_factory=dict)
    result: JsonValue = None
    events: list[Event] = Field(default_factory=list)
    completed: datetime | None = None
    working_time: float | None = None
    error: str | None = None
    """``"TypeName: message"`` when the subtask raised."""


Event = Annotated[
    StoreEvent
    | SpanBeginEvent
    | SpanEndEvent
    | InfoEvent
    | InputEvent
    | SandboxEvent
    | SubtaskEvent,
    Field(discriminator="event"),
]
"""Any transcript event, discriminated by its ``event`` field."""
