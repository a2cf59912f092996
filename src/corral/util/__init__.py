"""The corral utility API, with the names and signatures of ``inspect_ai.util``.

Code written against ``inspect_ai.util`` ports by changing the import to
``corral.util``. This module only re-exports; the implementations live in
:mod:`corral.runtime` (and, as they land, :mod:`corral.sandboxes` and
:mod:`corral.tracing`).
"""

from ..runtime import (
    BaseEvent,
    DisplayType,
    Event,
    ExecResult,
    InfoEvent,
    InputEvent,
    JsonChange,
    ResourceError,
    SampleLog,
    SandboxEvent,
    SpanBeginEvent,
    SpanEndEvent,
    Store,
    StoreEvent,
    StoreModel,
    Subtask,
    SubtaskEvent,
    Transcript,
    concurrency,
    concurrency_status,
    current_span_id,
    display_type,
    input_screen,
    resource,
    span,
    store,
    store_as,
    store_from_events,
    store_from_events_as,
    subprocess,
    subtask,
    throttle,
    transcript,
)
from ..tracing import TRACE, trace_action, trace_message

__all__ = [
    "TRACE",
    "BaseEvent",
    "DisplayType",
    "Event",
    "ExecResult",
    "InfoEvent",
    "InputEvent",
    "JsonChange",
    "ResourceError",
    "SampleLog",
    "SandboxEvent",
    "SpanBeginEvent",
    "SpanEndEvent",
    "Store",
    "StoreEvent",
    "StoreModel",
    "Subtask",
    "SubtaskEvent",
    "Transcript",
    "concurrency",
    "concurrency_status",
    "current_span_id",
    "display_type",
    "input_screen",
    "resource",
    "span",
    "store",
    "store_as",
    "store_from_events",
    "store_from_events_as",
    "subprocess",
    "subtask",
    "throttle",
    "trace_action",
    "trace_message",
    "transcript",
]

from .._util import fixup_module_metadata

fixup_module_metadata(__name__, globals(), facade=True)
del fixup_module_metadata
