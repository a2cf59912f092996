"""The trace file handler: records as JSON lines, buffered in memory, written by a flusher thread.

* **Format.** One JSON object per line: ``timestamp`` (local ISO 8601 with
  its UTC offset), ``level``, ``message``; ``module``, ``function`` and
  ``line`` for records that are not ``TRACE``; then every non-standard
  attribute of the record in the order it was set (the action fields of
  ``trace_action``, any ``extra``), and last (unless an ``extra`` set them)
  ``task``, ``sample_id`` and ``span_id``: where the record was written (see
  :mod:`corral.tracing._context`; ``null`` outside a task, sample or span).
  Values JSON cannot encode are written as their ``str()``.
* **Buffering.** A record costs a dict, one ``json`` encode and a list append.
  A daemon thread writes the buffer every :data:`FLUSH_INTERVAL` seconds (a
  full buffer is written at once), and the exit hook writes the rest, so a
  process killed with SIGKILL loses at most the last second. Each write is
  one ``write(2)`` of whole lines to a file opened ``O_APPEND``.
* **Failures.** A write that fails (a full disk) turns tracing off for the
  process, with one line on stderr (see :func:`~corral.tracing._actions.turn_off`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import stat
import threading
import time
from collections.abc import Mapping
from itertools import islice
from typing import TYPE_CHECKING, Any, Final

from . import _actions
from ._actions import TRACE
from ._context import CONTEXT_FIELDS, current_context
from ._storage import compress, open_shared

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from ._context import TraceContext

__all__ = ["FLUSH_INTERVAL", "TraceFileHandler"]

#: Seconds between two writes of the buffer.
FLUSH_INTERVAL: Final = 1.0
#: A buffer this long is written at once rather than at the next interval.
_FLUSH_LINES: Final = 4096

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


class TraceFileHandler(logging.Handler):
    """Buffers records as JSON lines and writes them to the trace file."""

    def __init__(self, path: Path, level: int) -> None:
        super().__init__()
        self.path = path
        #: Records below this level are not written (they may still be forwarded).
        self.threshold = level
        self._fd, self._locked = open_shared(path)
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
        if logger is not None and self.forwards(level):
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

    def forwards(self, level: int) -> bool:
        """Whether records of *level* go on to the handlers above the logger (:meth:`attach`)."""
        logger = self.logger
        if logger is None or not self._saved_propagate:
            return False
        wanted = self._saved_level
        if wanted == logging.NOTSET and logger.parent is not None:
            wanted = logger.parent.getEffectiveLevel()
        return level >= wanted

    def write_record(self, record: logging.LogRecord) -> None:
        """Write *record* to the file (if the handler's filters let it), and nowhere else."""
        if self.filters and not self.filter(record):
            return
        self.emit(record)

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
        if CONTEXT_FIELDS[-1] not in out:  # else set by trace_action / trace_message
            for key, value in current_context().fields().items():
                out.setdefault(key, value)  # an ``extra`` of the same name wins
        return _encode(out) + "\n"

    @staticmethod
    def action_json(
        action: str,
        detail: str,
        trace_id: str,
        parent_id: str | None,
        start_time: float,
        where: TraceContext,
    ) -> tuple[str, str, str]:
        """The parts of an action's lines that its enter and finish records share.

        The opening of the message (without its closing quote), the fields up
        to the event, and the fields after it (the place *where* it started
        last): see :meth:`write_action`. Ids are made by ``trace_action`` and
        need no escaping.
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
            f'", "trace_id": "{trace_id}", "parent_id": {parent}, "start_time": {start_time!r}, '
            f"{where.json}",
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

    def write_message(self, msg: str, args: tuple[Any, ...], where: TraceContext) -> None:
        """Write a ``TRACE`` record of *msg* % *args* in *where*, as :meth:`format_line` would."""
        line = (
            f'{{"timestamp": "{self.timestamp(time.time())}", "level": {self._trace_name}, '
            f'"message": {_quote(_message(msg, args))}, {where.json}}}\n'
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
                    compress(self.path)
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
            self._fd, self._locked = open_shared(self.path)
        except OSError as exc:
            self._fd = -1
            _actions.turn_off(exc, f"reopening {self.path} after fork")
        if inherited >= 0:
            os.close(inherited)
        self._flusher = self._start_flusher()
