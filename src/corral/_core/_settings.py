"""Settings that scopes write and primitives read, as context variables.

A task scope (``corral.task(...)``) sets these for the code it runs; the
primitives (``subprocess()``, the sandbox providers) read them. Neither side
imports the other: this module is the whole interface between them. Each
task started in a nursery sees the settings of the scope that started it,
because anyio and trio copy the context when a task starts.

* the **kill grace**: seconds between SIGTERM and SIGKILL when a child is
  stopped (the task's ``kill_grace``, else ``$CORRAL_KILL_GRACE``, else 2 s);
* the **subprocess limiter**: the limit ``subprocess()`` takes a slot of (the
  task's ``max_subprocesses``, else the event loop's shared
  ``"subprocesses"`` limit of ``os.cpu_count()`` slots).
"""

from __future__ import annotations

import functools
import os
from contextvars import ContextVar
from typing import TYPE_CHECKING

from ._checks import env_seconds
from ._limiters import current_registry

if TYPE_CHECKING:
    from ._limiters import Limiter

__all__ = [
    "DEFAULT_KILL_GRACE",
    "KILL_GRACE_ENV",
    "SUBPROCESSES",
    "current_kill_grace",
    "default_subprocess_limit",
    "kill_grace",
    "subprocess_limiter",
    "task_subprocess_limiter",
]

#: Environment variable that sets the default kill grace, in seconds.
KILL_GRACE_ENV = "CORRAL_KILL_GRACE"
#: Seconds between SIGTERM and SIGKILL when neither a task nor the environment says.
DEFAULT_KILL_GRACE = 2.0
#: Name of the shared subprocess limit.
SUBPROCESSES = "subprocesses"

#: The kill grace a scope set for the code inside it; ``None``: not set.
kill_grace: ContextVar[float | None] = ContextVar("corral.kill_grace", default=None)
#: The subprocess limiter a task scope set for the code inside it; ``None``: the shared one.
task_subprocess_limiter: ContextVar[Limiter | None] = ContextVar(
    "corral.subprocess_limiter", default=None
)


def current_kill_grace() -> float:
    """The kill grace in force: the scope's, else ``$CORRAL_KILL_GRACE``, else 2 s.

    Raises:
        ValueError: ``$CORRAL_KILL_GRACE`` is not a number of seconds.
    """
    grace = kill_grace.get()
    if grace is not None:
        return grace
    return env_seconds(KILL_GRACE_ENV, DEFAULT_KILL_GRACE)


@functools.cache
def default_subprocess_limit() -> int:
    """Slots of the shared ``"subprocesses"`` limit: ``os.cpu_count()``.

    Read once: ``os.cpu_count()`` reads ``/sys`` each time (about 6 µs), and
    the shared limit keeps the slots it was created with anyway.
    """
    return os.cpu_count() or 1


def subprocess_limiter() -> Limiter:
    """The limiter ``subprocess()`` takes a slot of, here and now.

    Raises:
        RuntimeError: No event loop is running.
    """
    limiter = task_subprocess_limiter.get()
    if limiter is not None:
        return limiter
    return current_registry().named(SUBPROCESSES, SUBPROCESSES, default_subprocess_limit())
