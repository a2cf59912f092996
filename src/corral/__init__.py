"""corral: a structured-concurrency runtime for evaluation and agent harnesses.

Layering: :mod:`corral.runtime` holds the machinery (task scopes, supervised
subprocesses, named limits); :mod:`corral.util` is the ``inspect_ai.util``
compatible facade over it. The top level offers the task scope itself::

    async with corral.task("my-eval", max_subprocesses=8) as task:
        task.start_soon(run_sample, 1)
"""

from . import util
from ._version import __version__
from .runtime import Task, current_task, task

__all__ = ["Task", "__version__", "current_task", "task"]
