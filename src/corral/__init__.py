"""corral: a structured-concurrency runtime for evaluation and agent harnesses.

The top level holds the task scope, which owns everything started inside it::

    async with corral.task("my-eval", max_subprocesses=8) as task:
        async with task.sample(1, sandbox="local"):
            ...

:mod:`corral.util` is the ``inspect_ai.util``-compatible API (``subprocess``,
``concurrency``, ``store``, ``sandbox``, ``trace_action``, ...);
:mod:`corral.sandboxes` and :mod:`corral.tracing` hold what only corral has.
Each public name is exported by exactly one of these.

Layering, from the top (checked by import-linter, see ``pyproject.toml``):
``util`` (the facade, and inspect-only utilities) over ``_scope`` (task and
sample scopes, the sandbox lifecycle) over ``sandboxes`` (the contract, the
proxy that enforces it, the providers) over ``_state`` (stores, transcripts,
spans) and ``_process`` (supervised subprocesses, limits), which know
nothing of each other, over ``tracing``, over ``_core``. The ``corral``
command (``_cli``) sits on top, and the library never imports it.
"""

from . import util
from ._core._version import __version__
from ._process._stream import StreamingProcess, open_process
from ._scope._sample import Sample
from ._scope._task import Task, TaskStatistics, current_task, task

__all__ = [
    "Sample",
    "StreamingProcess",
    "Task",
    "TaskStatistics",
    "__version__",
    "current_task",
    "open_process",
    "task",
]

from ._core._public import fixup_module_metadata

fixup_module_metadata(__name__, globals())
del fixup_module_metadata
