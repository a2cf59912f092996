"""The corral runtime: task scopes, supervised subprocesses and concurrency limits.

Everything here works under trio and under asyncio. The names users need
most are also re-exported, with ``inspect_ai``-compatible signatures, from
:mod:`corral.util`.
"""

from ._limits import concurrency, concurrency_status
from ._subprocess import ExecResult, subprocess
from ._task import Task, TaskStatistics, current_task, task

__all__ = [
    "ExecResult",
    "Task",
    "TaskStatistics",
    "concurrency",
    "concurrency_status",
    "current_task",
    "subprocess",
    "task",
]

from .._util import fixup_module_metadata

fixup_module_metadata(__name__, globals())
del fixup_module_metadata
