"""The corral utility API, with the names and signatures of ``inspect_ai.util``.

Code written against ``inspect_ai.util`` ports by changing the import to
``corral.util``. This module only re-exports; the implementations live in
corral's private layers (see :mod:`corral`), and :mod:`corral.sandboxes` and
:mod:`corral.tracing` hold what only corral has.
"""

from enum import StrEnum

from .._core._warn_once import warn_once
from .._process._concurrency import concurrency, concurrency_status
from .._process._subprocess import ExecResult, subprocess
from .._scope._collect import background, collect
from .._scope._limits import (
    Limit,
    LimitExceededError,
    LimitScope,
    SampleLimits,
    apply_limits,
    sample_limits,
    suspend_working_limit,
    time_limit,
    working_limit,
)
from .._state._events import (
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
from .._state._log import SampleLog
from .._state._snapshot import store_from_events
from .._state._span import SpanIdProvider, span, span_id_provider
from .._state._store import Store, store
from .._state._store_model import StoreModel, store_as, store_from_events_as
from .._state._subtask import Subtask, subtask
from .._state._transcript import Transcript, transcript
from ..sandboxes._compose import (
    ComposeBuild,
    ComposeConfig,
    ComposeHealthcheck,
    ComposeService,
    ComposeVolumeMount,
    is_compose_yaml,
    is_dockerfile,
    parse_compose_yaml,
)
from ..sandboxes._environment import (
    SandboxConnection,
    SandboxEnvironment,
    SandboxEnvironmentSpec,
)
from ..sandboxes._errors import (
    OutputLimitExceededError,
    SandboxTimeoutError,
    SandboxUnavailableError,
    SandboxUserUnsupportedError,
)
from ..sandboxes._exec_remote import (
    ExecCompleted,
    ExecOutput,
    ExecRemoteAwaitableOptions,
    ExecRemoteProcess,
    ExecRemoteStreamingOptions,
    ExecStderr,
    ExecStdout,
)
from ..sandboxes._lookup import sandbox, sandbox_default, sandbox_with
from ..sandboxes._output_limits import override_sandbox_output_limit
from ..sandboxes._registry import sandboxenv
from ..sandboxes._types import (
    SandboxEnvironmentConfigType,
    SandboxEnvironmentLimits,
    SandboxEnvironments,
    SandboxEnvironmentType,
)
from ..tracing._actions import TRACE, trace_action, trace_message
from ._display import DisplayType, display_type, input_screen
from ._resource import ResourceError, resource
from ._throttle import throttle

__all__ = [
    "TRACE",
    "BaseEvent",
    "ComposeBuild",
    "ComposeConfig",
    "ComposeHealthcheck",
    "ComposeService",
    "ComposeVolumeMount",
    "DisplayType",
    "Event",
    "ExecCompleted",
    "ExecOutput",
    "ExecRemoteAwaitableOptions",
    "ExecRemoteProcess",
    "ExecRemoteStreamingOptions",
    "ExecResult",
    "ExecStderr",
    "ExecStdout",
    "InfoEvent",
    "InputEvent",
    "JsonChange",
    "Limit",
    "LimitExceededError",
    "LimitScope",
    "OutputLimitExceededError",
    "ResourceError",
    "SampleLimits",
    "SampleLog",
    "SandboxConnection",
    "SandboxEnvironment",
    "SandboxEnvironmentConfigType",
    "SandboxEnvironmentLimits",
    "SandboxEnvironmentSpec",
    "SandboxEnvironmentType",
    "SandboxEnvironments",
    "SandboxEvent",
    "SandboxTimeoutError",
    "SandboxUnavailableError",
    "SandboxUserUnsupportedError",
    "SpanBeginEvent",
    "SpanEndEvent",
    "SpanIdProvider",
    "Store",
    "StoreEvent",
    "StoreModel",
    "StrEnum",
    "Subtask",
    "SubtaskEvent",
    "Transcript",
    "apply_limits",
    "background",
    "collect",
    "concurrency",
    "concurrency_status",
    "current_span_id",
    "display_type",
    "input_screen",
    "is_compose_yaml",
    "is_dockerfile",
    "override_sandbox_output_limit",
    "parse_compose_yaml",
    "resource",
    "sample_limits",
    "sandbox",
    "sandbox_default",
    "sandbox_with",
    "sandboxenv",
    "span",
    "span_id_provider",
    "store",
    "store_as",
    "store_from_events",
    "store_from_events_as",
    "subprocess",
    "subtask",
    "suspend_working_limit",
    "throttle",
    "time_limit",
    "trace_action",
    "trace_message",
    "transcript",
    "warn_once",
    "working_limit",
]

from .._core._public import fixup_module_metadata

fixup_module_metadata(__name__, globals(), facade=True)
del fixup_module_metadata
