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
  ``"subprocesses"`` limit of ``os.cpu_count()`` slots);
* the **sample's task group**: the one ``background()`` work runs in, which a
  sample scope opens around its body and waits for before its sandboxes are
  cleaned up. A layer below the scopes leaves work there with
  :func:`start_in_sample` (an ``exec_remote`` handle whose ``async for`` was
  left early is killed this way).
"""

from __future__ import annotations

import functools
import os
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from ._checks import env_seconds
from ._limiters import current_registry

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from anyio.abc import TaskGroup

    from ._limiters import Limiter

__all__ = [
    "DEFAULT_KILL_GRACE",
    "KILL_GRACE_ENV",
    "SUBPROCESSES",
    "current_kill_grace",
    "default_subprocess_limit",
    "kill_grace",
    "sample_group",
    "start_in_sample",
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
#: The running sample's task group (see :func:`start_in_sample`); ``None``: no sample.
sample_group: ContextVar[TaskGroup | None] = ContextVar("corral.sample_group", default=None)


def start_in_sample(func: Callable[[], Coroutine[Any, Any, object]], *, name: str) -> bool:
    """Start ``func()`` in the running sample's task group, if there is one that is open.

    The sample scope waits for it (it cancels the group when the body ends:
    *func* must shield what it has to finish). Safe to call from a finalizer
    (``__del__``) on the event loop's thread; elsewhere there is no group in
    the context and nothing is started.

    Returns:
        Whether it was started.
    """
    group = sample_group.get()
    if group is None:
        return False
    try:
        group.start_soon(func, name=name)
    except RuntimeError:  # the group has closed: the sample is over
        return False
    return True


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
