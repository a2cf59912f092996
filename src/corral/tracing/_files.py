"""The trace file: JSON Lines, buffered in memory, written every second, gzipped at exit.

One handler on the ``corral`` logger writes every record it gets to
``$CORRAL_TRACE_FILE``, or to ``trace-<pid>.log`` in :func:`trace_dir`. It is
installed by the first ``trace_action``/``trace_message`` on a ``corral``
logger, or by :func:`init`.

* **Format.** One JSON object per line: ``timestamp`` (local ISO 8601 with
  its UTC offset), ``level``, ``message``; ``module``, ``function`` and
  ``line`` for records that are not ``TRACE``; then every non-standard
  attribute of the record in the order it was set (the action fields of
  ``trace_action``, any ``extra``). Values JSON cannot encode are written as
  their ``str()``.
* **Buffering.** A record costs a dict, one ``json`` encode and a list append.
  A daemon thread writes the buffer every :data:`FLUSH_INTERVAL` seconds (a
  full buffer is written at once), and the exit hook writes the rest, so a
  process killed with SIGKILL loses at most the last second. Each write is
  one ``write(2)`` of whole lines to a file opened ``O_APPEND``.
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
* **Failures.** A write that fails (a full disk) turns tracing off for the
  process, with one line on stderr (see :func:`~corral.tracing._actions.turn_off`).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import gzip
import json
import logging
import os
import shutil
import stat
import threading
import time
from collections.abc import Mapping
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from . import _actions
from ._actions import TRACE
from ._records import is_trace_file_name

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "ENV_TRACE_FILE",
    "ENV_TRACE_LEVEL",
    "FLUSH_INTERVAL",
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
#: Seconds between two writes of the buffer.
FLUSH_INTERVAL: Final = 1.0
#: How many trace files installing keeps in the default directory.
KEEP_FILES: Final = 10
#: A buffer this long is written at once rather than at the next interval.
_FLUSH_LINES: Final = 4096
_LOGGER_NAME: Final = "corral"

_install_lock = threading.Lock()
_handler: _TraceFileHandler | None = None
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
    return _default_dir()


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
                path = _default_dir() / f"trace-{os.getpid()}.log"
            handler = _TraceFileHandler(path, level)
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
    _actions.activate(direct_handler)
    return path


def direct_handler(logger: logging.Logger) -> _TraceFileHandler | None:
    """The handler, if a ``TRACE`` record of *logger* would reach it and nothing else.

    Then ``trace_action`` and ``trace_message`` write their lines straight to
    it, without building a ``LogRecord`` nobody else would see.
    """
    handler = _handler
    if handler is None or not handler.takes_trace_alone():
        return None
    top = handler.logger
    current: logging.Logger | None = logger
    while current is not top:
        if (
            current is None
            or current.handlers
            or current.filters
            or current.disabled
            or not current.propagate
        ):
            return None
        current = current.parent
    if top is None or top.filters or top.disabled or len(top.handlers) != 1:
        return None
    return handler


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


def _default_dir() -> Path:
    import platformdirs

    return platformdirs.user_data_path("corral") / "traces"


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


def _open_shared(path: Path) -> tuple[int, bool]:
    """Open *path* for appending and hold a shared ``flock`` on it.

    Returns the descriptor and whether it is locked (some filesystems cannot
    lock). If the file was compressed away between the open and the lock, by
    another process exiting, the new path is opened instead.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
        except OSError:
            return fd, False
        try:
            opened = os.fstat(fd)
            current = os.stat(path)
        except FileNotFoundError:
            pass
        except BaseException:
            os.close(fd)
            raise
        else:
            if (opened.st_dev, opened.st_ino) == (current.st_dev, current.st_ino):
                return fd, True
        os.close(fd)


def _compress(path: Path) -> None:
    """Gzip *path* to ``<path>.gz`` (appended as a new member if it exists), then delete it."""
    target = path.with_name(path.name + ".gz")
    partial = path.with_name(f"{path.name}.gz.{os.getpid()}.tmp")
    try:
        with open(partial, "wb") as out:
            with contextlib.suppress(FileNotFoundError), open(target, "rb") as earlier:
                shutil.copyfileobj(earlier, out)
            with (
                open(path, "rb") as plain,
                gzip.GzipFile(filename=path.name, mode="wb", fileobj=out) as packed,
            ):
                shutil.copyfileobj(plain, packed, 1 << 20)
        os.replace(partial, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise
    os.unlink(path)


# -- records ------------------------------------------------------------------------------

#: The attributes every ``LogRecord`` has (and those formatters add); the rest are extras.
_STANDARD: Final = frozenset(_actions._TEMPLATE) | {"message", "asctime", "taskName"}
#: ``LogRecord.__init__`` sets the standard attributes first, so extras start here.
_FIRST_EXTRA: Final = len(_actions._TEMPLATE)


def _as_text(value: object) -> str:
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


def _message(msg: str, args: Any) -> str:
    """What ``LogRecord.getMessage`` returns for *msg* and *args*, never raising."""
    if not args:
        return msg
    if len(args) == 1 and isinstance(args[0], Mapping) and args[0]:
        args = args[0]  # as LogRecord does with a single mapping
    try:
        return str(msg % args)
    except Exception:
        return _unformattable(msg, args)


def _unformattable(msg: object, args: object) -> str:
    return f"{_as_text(msg)} (with arguments it cannot take: {_as_text(args)})"


_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, default=_as_text)
#: A str as a JSON string, quotes included (what ``_ENCODER`` does with strs).
_quote: Callable[[str], str] = json.encoder.encode_basestring
#: ``_quote`` of the few action names in use.
_quoted_actions: dict[str, str] = {}
_SCALARS: Final = (str, int, float, bool, type(None))


def _encode(out: dict[str, Any]) -> str:
    try:
        return _ENCODER.encode(out)
    except (TypeError, ValueError, RecursionError):  # a key that is not a str, a cycle
        return _ENCODER.encode(
            {
                key: value if isinstance(value, _SCALARS) else _as_text(value)
                for key, value in out.items()
            }
        )


class _TraceFileHandler(logging.Handler):
    """Buffers records as JSON lines and writes them to the trace file."""

    def __init__(self, path: Path, level: int) -> None:
        super().__init__()
        self.path = path
        #: Records below this level are not written (they may still be forwarded).
        self.threshold = level
        self._fd, self._locked = _open_shared(path)
        self._buffer: list[str] = []
        self._buffer_lock = threading.Lock()
        self._write_lock = threading.RLock()
        self._stop = threading.Event()
        self._stamp: tuple[int, str, str] = (-1, "", "")
        self._trace_name = _quote(logging.getLevelName(TRACE))
        self.logger: logging.Logger | None = None
        self._saved_level = logging.NOTSET
        self._saved_propagate = True
        self._flusher = self._start_flusher()

    def __repr__(self) -> str:
        return f"<corral trace file {str(self.path)!r} ({logging.getLevelName(self.threshold)})>"

    # -- the logger ---------------------------------------------------------------------

    def attach(self, logger: logging.Logger) -> None:
        """Handle *logger*'s records, lowering its level to the threshold if needed.

        Propagation is taken over by :meth:`handle`: records go on to the
        handlers above *logger* only at the level they did before.
        """
        self._saved_level = logger.level
        self._saved_propagate = logger.propagate
        logger.addHandler(self)
        if logger.level == logging.NOTSET or logger.level > self.threshold:
            logger.setLevel(self.threshold)
        logger.propagate = False
        self.logger = logger

    def detach(self) -> None:
        """Remove the handler and give the logger its level and propagation back."""
        logger, self.logger = self.logger, None
        if logger is not None:
            logger.removeHandler(self)
            logger.setLevel(self._saved_level)
            logger.propagate = self._saved_propagate

    def handle(self, record: logging.LogRecord) -> bool:
        if self.filters and not self.filter(record):
            return False
        level = record.levelno
        if level >= self.threshold:
            self.emit(record)
        logger = self.logger
        if logger is not None and self._saved_propagate:
            wanted = self._saved_level
            if wanted == logging.NOTSET and logger.parent is not None:
                wanted = logger.parent.getEffectiveLevel()
            if level >= wanted:
                self._propagate(logger, record)
        return True

    @staticmethod
    def _propagate(logger: logging.Logger, record: logging.LogRecord) -> None:
        """What ``Logger.callHandlers`` would do above *logger*, had it propagated.

        A handler attached to *logger* itself has seen the record already and
        is skipped above it too (pytest's log capture, for one, attaches its
        handlers both to the root and to loggers that do not propagate).
        """
        found = len(logger.handlers) - 1
        done = set(logger.handlers)
        parent = logger.parent
        while parent is not None:
            for handler in parent.handlers:
                found += 1
                if handler not in done and record.levelno >= handler.level:
                    handler.handle(record)
            parent = parent.parent if parent.propagate else None
        last_resort = logging.lastResort
        if not found and last_resort is not None and record.levelno >= last_resort.level:
            last_resort.handle(record)

    def takes_trace_alone(self) -> bool:
        """Whether ``TRACE`` records are written here and not forwarded above the logger."""
        if self.filters or self.threshold > TRACE:
            return False
        if logging.getLogRecordFactory() is not logging.LogRecord:
            return False
        logger = self.logger
        if logger is None or not self._saved_propagate:
            return logger is not None
        wanted = self._saved_level
        if wanted == logging.NOTSET and logger.parent is not None:
            wanted = logger.parent.getEffectiveLevel()
        return wanted > TRACE

    # -- records ------------------------------------------------------------------------

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format_line(record)
        except Exception as exc:
            _actions.turn_off(exc, f"formatting a record for {self.path}")
            return
        self.write_line(line)

    def write_line(self, line: str) -> None:
        """Buffer one line (with its newline)."""
        self._append(line)

    def format_line(self, record: logging.LogRecord) -> str:
        """One JSON line for *record*, with its newline."""
        try:
            message = record.getMessage()
        except Exception:
            message = _unformattable(record.msg, record.args)
        out: dict[str, Any] = {
            "timestamp": self.timestamp(record.created),
            "level": record.levelname,
            "message": message,
        }
        if record.levelno != TRACE:
            out["module"] = record.module
            out["function"] = record.funcName
            out["line"] = record.lineno
        attributes = record.__dict__
        extras = (
            islice(attributes.items(), _FIRST_EXTRA, None)
            if type(record) is logging.LogRecord
            else attributes.items()
        )
        for key, value in extras:
            if key not in _STANDARD:
                out[key] = value
        return _encode(out) + "\n"

    @staticmethod
    def action_json(
        action: str, detail: str, trace_id: str, parent_id: str | None, start_time: float
    ) -> tuple[str, str, str]:
        """The parts of an action's lines that its enter and finish records share.

        The opening of the message (without its closing quote), the fields up
        to the event, and the fields after it: see :meth:`write_action`. Ids
        are made by ``trace_action`` and need no escaping.
        """
        quoted_action = _quoted_actions.get(action)
        if quoted_action is None:
            quoted_action = _quote(action)
            if len(_quoted_actions) < 256:
                _quoted_actions[action] = quoted_action
        quoted_detail = _quote(detail)
        parent = "null" if parent_id is None else f'"{parent_id}"'
        return (
            # JSON escapes character by character, so quoted parts can be spliced.
            f"{quoted_action[:-1]}: {quoted_detail[1:-1]}",
            f'"action": {quoted_action}, "detail": {quoted_detail}, "event": "',
            f'", "trace_id": "{trace_id}", "parent_id": {parent}, "start_time": {start_time!r}',
        )

    def write_action(
        self,
        parts: tuple[str, str, str],
        event: str,
        created: float,
        duration: float | None = None,
        error: dict[str, str] | None = None,
    ) -> None:
        """Write an action record from :meth:`action_json` parts, as :meth:`format_line` would.

        The keys come in the same order as on a ``LogRecord`` built by
        ``trace_action``: ``timestamp``, ``level``, ``message``, the action fields.
        """
        head, middle, tail = parts
        stamp = self.timestamp(created)
        if duration is None:
            line = (
                f'{{"timestamp": "{stamp}", "level": {self._trace_name}, '
                f'"message": {head} ({event})", {middle}{event}{tail}}}\n'
            )
        else:
            errors = (
                ""
                if error is None
                else "".join(f", {_quote(k)}: {_quote(v)}" for k, v in error.items())
            )
            line = (
                f'{{"timestamp": "{stamp}", "level": {self._trace_name}, '
                f'"message": {head} ({event})", {middle}{event}{tail}, '
                f'"duration": {duration!r}{errors}}}\n'
            )
        self._append(line)

    def write_message(self, msg: str, args: tuple[Any, ...]) -> None:
        """Write a ``TRACE`` record of *msg* % *args*, as :meth:`format_line` would."""
        line = (
            f'{{"timestamp": "{self.timestamp(time.time())}", "level": {self._trace_name}, '
            f'"message": {_quote(_message(msg, args))}}}\n'
        )
        self._append(line)

    def _append(self, line: str) -> None:
        """Buffer one line; flush at once when the buffer is full."""
        with self._buffer_lock:
            buffer = self._buffer
            buffer.append(line)
            full = len(buffer) >= _FLUSH_LINES
        if full:
            self.flush()

    def timestamp(self, created: float) -> str:
        """*created* as local ISO 8601 time with microseconds and the UTC offset."""
        second = int(created)
        stamp = self._stamp
        if stamp[0] != second:
            local = time.localtime(second)
            offset = local.tm_gmtoff
            sign = "-" if offset < 0 else "+"
            hours, rest = divmod(abs(offset), 3600)
            minutes, seconds = divmod(rest, 60)
            zone = f"{sign}{hours:02d}:{minutes:02d}" + (f":{seconds:02d}" if seconds else "")
            stamp = self._stamp = (second, time.strftime("%Y-%m-%dT%H:%M:%S", local), zone)
        # Below 1e6: created - second < 1, in steps of the float spacing of epoch times.
        micros = str(1_000_000 + int((created - second) * 1_000_000))
        return f"{stamp[1]}.{micros[1:]}{stamp[2]}"

    # -- writing ------------------------------------------------------------------------

    def flush(self) -> None:
        """Write the buffered lines to the file, in one ``write(2)`` where possible."""
        with self._write_lock:
            with self._buffer_lock:
                buffer = self._buffer
                if not buffer:
                    return
                self._buffer = []
            if self._fd < 0:
                return
            data = memoryview("".join(buffer).encode("utf-8", "backslashreplace"))
            try:
                while data:
                    data = data[os.write(self._fd, data) :]
            except OSError as exc:
                _actions.turn_off(exc, f"writing {self.path}")

    def _start_flusher(self) -> threading.Thread:
        flusher = threading.Thread(
            target=self._flush_periodically, name="corral-trace-flusher", daemon=True
        )
        flusher.start()
        return flusher

    def _flush_periodically(self) -> None:
        stop = self._stop
        while not stop.wait(FLUSH_INTERVAL):
            try:
                self.flush()
            except Exception as exc:
                _actions.turn_off(exc, f"writing {self.path}")
                return

    def join_flusher(self) -> None:
        """Stop the flusher thread and wait for it (not while holding the write lock)."""
        self._stop.set()
        flusher = self._flusher
        if flusher is not threading.current_thread() and flusher.is_alive():
            flusher.join(timeout=5)

    def close(self) -> None:
        """Write what is buffered and close the file (not compressed).

        The flusher is told to stop but not waited for: this may run on the
        flusher thread, or in a failing write that holds the write lock.
        """
        self._stop.set()
        self.flush()
        with self._write_lock:
            fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)
        super().close()

    def finish(self) -> None:
        """At exit: write the buffer, close, and compress the file if this is the last writer."""
        self.join_flusher()
        self.flush()
        with self._write_lock:
            fd, self._fd = self._fd, -1
        if fd < 0:
            return
        try:
            # The plain file stays if compressing fails: readers read it too.
            with contextlib.suppress(Exception):
                if stat.S_ISREG(os.fstat(fd).st_mode) and self._try_lock_alone(fd):
                    _compress(self.path)
        finally:
            os.close(fd)
            super().close()

    def _try_lock_alone(self, fd: int) -> bool:
        if not self._locked:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def after_fork(self) -> None:
        """In a forked child: fresh locks, an empty buffer, its own descriptor and flusher.

        The parent writes the records it buffered before the fork; the child
        appends to the same file.
        """
        self._buffer = []
        self._buffer_lock = threading.Lock()
        self._write_lock = threading.RLock()
        self._stop = threading.Event()
        inherited = self._fd
        try:
            self._fd, self._locked = _open_shared(self.path)
        except OSError as exc:
            self._fd = -1
            _actions.turn_off(exc, f"reopening {self.path} after fork")
        if inherited >= 0:
            os.close(inherited)
        self._flusher = self._start_flusher()
