"""The corral runtime: task scopes, supervised subprocesses and concurrency limits.

Everything here works under trio and under asyncio. The names users need
most are also re-exported, with ``inspect_ai``-compatible signatures, from
:mod:`corral.util`.
"""

from ._changes import store_from_events
from ._display import DisplayType, display_type, input_screen
from ._events import (
    BaseEvent,
    Event,
    InfoEvent,
    InputEvent,
    JsonChange,
    SandboxEvent,
    SpanBeginEvent,
    SpanEndEvent,
    StoreEvent,
    SubtaskEvent,
    current_span_id,
)
from ._limits import concurrency, concurrency_status
from ._resource import ResourceError, resource
from ._sample import Sample, SampleLog
from ._span import span
from ._store import Store, store
from ._store_model import StoreModel, store_as, store_from_events_as
from ._subprocess import ExecResult, subprocess
from ._subtask import Subtask, subtask
from ._task import Task, TaskStatistics, current_task, task
from ._throttle import throttle
from ._transcript import Transcript, transcript

__all__ = [
    "BaseEvent",
    "DisplayType",
    "Event",
    "ExecResult",
    "InfoEvent",
    "InputEvent",
    "JsonChange",
    "ResourceError",
    "Sample",
    "SampleLog",
    "SandboxEvent",
    "SpanBeginEvent",
    "SpanEndEvent",
    "Store",
    "StoreEvent",
    "StoreModel",
    "Subtask",
    "SubtaskEvent",
    "Task",
    "TaskStatistics",
    "Transcript",
    "concurrency",
    "concurrency_status",
    "current_span_id",
    "current_task",
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
    "task",
    "throttle",
    "transcript",
]

from .._util import fixup_module_metadata

fixup_module_metadata(__name__, globals())
del fixup_module_metadata
