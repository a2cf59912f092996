"""Installing the trace file: choosing it, its level, rotation, and what happens at exit and fork.

One handler on the ``corral`` logger writes every record it gets to
``$CORRAL_TRACE_FILE``, or to ``trace-<pid>.log`` in :func:`trace_dir`; it is
installed by the first ``trace_action``/``trace_message``, or by :func:`init`.
The handler itself is :mod:`._handler`; where files live and how they are
shared and compressed is :mod:`._storage`.

* **Level.** ``$CORRAL_TRACE_LEVEL`` (a level name or number, default
  ``TRACE``). The ``corral`` logger's level is lowered to it if needed; records
  still reach the handlers above the ``corral`` logger (the root's) only at
  the level they did before, so an application's console does not fill up
  with ``TRACE`` lines.
* **Rotation.** When the default directory is used, installing keeps the
  :data:`KEEP_FILES` newest ``trace-*.log``/``trace-*.log.gz`` files there
  (the new one included) and deletes the others. A ``$CORRAL_TRACE_FILE``
  chosen by the user is never rotated.
* **Exit.** An ``atexit`` hook writes the buffer and gzips the file to
  ``<name>.gz`` (appending a gzip member when that exists), then deletes the
  plain file: unless another process still has the same file open (a shared
  ``$CORRAL_TRACE_FILE``; every writer holds a shared ``flock``), in which case
  the last one to exit compresses it.
* **Fork.** A forked child gets its own descriptor, buffer and flusher, and
  appends to the same file.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Final

from . import _actions
from ._actions import TRACE
from ._storage import default_dir, is_trace_file_name

if TYPE_CHECKING:
    from ._handler import TraceFileHandler

__all__ = [
    "ENV_TRACE_FILE",
    "ENV_TRACE_LEVEL",
    "KEEP_FILES",
    "init",
    "install",
    "trace_dir",
    "trace_file",
    "uninstall",
]

#: The trace file to write, instead of ``trace-<pid>.log`` in the default directory.
ENV_TRACE_FILE: Final = "CORRAL_TRACE_FILE"
#: The lowest level written to the trace file (a name such as ``INFO``, or a number).
ENV_TRACE_LEVEL: Final = "CORRAL_TRACE_LEVEL"
#: How many trace files installing keeps in the default directory.
KEEP_FILES: Final = 10
_LOGGER_NAME: Final = "corral"

_install_lock = threading.Lock()
_handler: TraceFileHandler | None = None
_atexit_registered = False


# -- public -------------------------------------------------------------------------------


def trace_dir() -> Path:
    """The directory trace files are written to (and listed from).

    That is the directory of ``$CORRAL_TRACE_FILE`` when it is set, and
    otherwise ``traces`` in the user data directory for ``corral`` (on Linux,
    ``~/.local/share/corral/traces``).
    """
    configured = os.environ.get(ENV_TRACE_FILE)
    if configured:
        return Path(configured).expanduser().absolute().parent
    return default_dir()


def trace_file() -> Path | None:
    """The file this process is tracing to, or ``None`` if none is installed."""
    handler = _handler
    return None if handler is None else handler.path


def init() -> Path:
    """Install the trace file now, rather than on the first traced action.

    Idempotent: once installed, this returns the same path. The file, its
    level, rotation and compression at exit are described in
    :mod:`corral.tracing`.

    Returns:
        The trace file this process writes.

    Raises:
        ValueError: ``$CORRAL_TRACE_LEVEL`` is not a level name or number.
        OSError: The trace file cannot be created.
        RuntimeError: Tracing was turned off after a failure, or the process is exiting.
    """
    if _actions.is_off():
        raise RuntimeError(
            "tracing is off for this process (it failed earlier, as reported on stderr, "
            "or the process is exiting)"
        )
    return install()


# -- installing ---------------------------------------------------------------------------


def install() -> Path:
    """Install the handler unless it is installed; return the trace file."""
    global _handler, _atexit_registered
    with _install_lock:
        if _handler is None:
            level = _level_from_env()
            configured = os.environ.get(ENV_TRACE_FILE)
            if configured:
                path = Path(configured).expanduser().absolute()
            else:
                path = default_dir() / f"trace-{os.getpid()}.log"
            from ._handler import TraceFileHandler  # json, the flusher: only once tracing

            handler = TraceFileHandler(path, level)
            try:
                if not configured:
                    _rotate(path.parent, path)
                handler.attach(logging.getLogger(_LOGGER_NAME))
            except BaseException:
                handler.close()
                raise
            _handler = handler
            if not _atexit_registered:
                atexit.register(_at_exit)
                _atexit_registered = True
        path = _handler.path
    _actions.activate(route)
    return path


def route(logger: logging.Logger) -> tuple[TraceFileHandler | None, bool]:
    """Where a ``TRACE`` record of *logger* goes, as ``(trace file handler or None, others)``.

    The trace file takes the ``TRACE`` records of every logger, whatever its
    handlers, unless the logger, or an ancestor below the root, was set to a
    level above ``TRACE`` (or logging is disabled at that level): the root's
    own level does not count, as ``inspect_ai`` lowers it for its trace file
    and corral does not touch it. *others* says whether a handler other than
    the trace file would take the record by the usual rules of
    :mod:`logging` (so a console at ``WARNING`` never sees ``TRACE`` lines).
    """
    handler = _handler
    if handler is None:
        return None, logger.isEnabledFor(TRACE)
    if logger.disabled:
        return None, False
    # logging's per-logger level cache (CPython's, since 3.7): cleared on every level change.
    cache: dict[object, bool] = logger._cache  # type: ignore[attr-defined]
    traced = cache.get(_TRACED)
    if traced is None:
        traced = cache[_TRACED] = _traced(logger)
    if not traced:  # then its own level (or a parent's) refuses TRACE: no handler takes it
        return None, False
    sink = handler if handler.threshold <= TRACE else None
    return sink, _reaches_others(logger, handler)


#: Our entry in a logger's ``_cache`` (logging keeps ``isEnabledFor`` answers there, by
#: level, and clears them all whenever a level changes, which is all ``_traced`` reads).
_TRACED: Final = "corral.traced"


def _traced(logger: logging.Logger) -> bool:
    """Whether *logger* lets ``TRACE`` records through, not counting the root's level."""
    if logger.manager.disable >= TRACE:
        return False
    root = logging.root
    current: logging.Logger | None = logger
    while current is not None and current is not root:
        if current.level:
            return current.level <= TRACE
        current = current.parent
    return True


def _reaches_others(logger: logging.Logger, handler: TraceFileHandler) -> bool:
    """Whether a ``TRACE`` record of *logger* would reach a handler other than *handler*."""
    if not logger.isEnabledFor(TRACE):
        return False
    current: logging.Logger | None = logger
    while current is not None:
        for other in current.handlers:
            if other is not handler and other.level <= TRACE:
                return True
        if current is handler.logger:  # it passes records on by its own rule
            return handler.forwards(TRACE)
        if not current.propagate:
            return False
        current = current.parent
    return False  # logging.lastResort takes WARNING and up only


def uninstall() -> None:
    """Remove the handler and close the file as it is (after a failure)."""
    global _handler
    handler, _handler = _handler, None
    if handler is not None:
        handler.detach()
        with contextlib.suppress(Exception):
            handler.close()


def _at_exit() -> None:
    global _handler
    _actions.stop()
    handler, _handler = _handler, None
    if handler is not None:
        handler.detach()
        handler.finish()


def _reset_for_tests() -> None:
    """Forget the installed handler (leaving its file as written) and all tracing state."""
    global _atexit_registered
    handler = _handler
    uninstall()
    if handler is not None:
        handler.join_flusher()
    if _atexit_registered:
        atexit.unregister(_at_exit)
        _atexit_registered = False
    _actions.reset()


def _after_fork_in_child() -> None:
    global _install_lock
    _install_lock = threading.Lock()
    handler = _handler
    if handler is not None:
        handler.after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _level_from_env() -> int:
    raw = os.environ.get(ENV_TRACE_LEVEL, "").strip()
    if not raw:
        return TRACE
    if raw.isdigit():
        return max(int(raw), 1)  # 0 would be NOTSET: the parent's level, not "everything"
    level = logging.getLevelNamesMapping().get(raw.upper())
    if level is None:
        raise ValueError(
            f"{ENV_TRACE_LEVEL} must be a logging level name (TRACE, DEBUG, INFO, WARNING, "
            f"ERROR, CRITICAL) or a non-negative number, not {raw!r}"
        )
    return level


def _rotate(directory: Path, current: Path) -> None:
    """Keep the newest trace files of *directory* (*current* among them); delete the rest."""
    found: list[tuple[float, str]] = []
    with contextlib.suppress(OSError), os.scandir(directory) as entries:
        for entry in entries:
            if entry.name == current.name or not is_trace_file_name(entry.name):
                continue
            with contextlib.suppress(OSError):
                if entry.is_file(follow_symlinks=False):
                    found.append((entry.stat(follow_symlinks=False).st_mtime, entry.path))
    found.sort(reverse=True)
    for _, old in found[KEEP_FILES - 1 :]:
        with contextlib.suppress(OSError):
            os.unlink(old)
