"""Deprecated: the names this module exported live in :mod:`corral` and :mod:`corral.util`.

Each name exported by corral has exactly one public home: the
``inspect_ai``-compatible names are in :mod:`corral.util`, the task scope in
:mod:`corral`. ``corral.runtime.X`` still works, with a ``DeprecationWarning``.
"""

from ._core._deprecate import deprecated_names

__all__: list[str] = []

_UTIL = [
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
    "transcript",
]
_TOP = ["Sample", "Task", "TaskStatistics", "current_task", "task"]

__getattr__ = deprecated_names(
    __name__,
    {
        **{name: f"corral.util:{name}" for name in _UTIL},
        **{name: f"corral:{name}" for name in _TOP},
    },
    version="0.2.0",
    issue="issue #10",
)
del deprecated_names
