"""``trace_action`` and ``trace_message``: TRACE records that follow the structured scopes.

``trace_action`` logs one record when a block is entered and one when it is
left, saying how it was left (``exit``, ``cancel``, ``timeout`` or
``error``). Each action gets a ``trace_id``; a context variable remembers the
action running in the current task, so a nested action, or an action in a
task started inside it, names it as its ``parent_id``. The actions of a trace
file therefore form a tree that follows the nurseries and cancel scopes.

Three things are kept cheap, because the runtime traces every subprocess,
sandbox call and subtask:

* a logger not enabled for ``TRACE`` costs two global checks and one
  ``isEnabledFor`` call: no detail formatting, no ids, no records;
* when the trace file handler is the only thing a record would reach (the
  usual case), the JSON line is written straight to it, with the parts an
  action's two records share built once;
* otherwise records are built without ``Logger.log`` (no caller lookup, no
  ``LogRecord.__init__``); they are ordinary :class:`logging.LogRecord`
  objects handed to :meth:`logging.Logger.handle`, so filters and handlers see
  them as usual;
* OpenTelemetry is looked up once (see :mod:`corral.tracing._otel`).

Tracing never breaks the traced code: anything that goes wrong while tracing
(a handler that raises, a full disk) is reported once on stderr, and tracing
is then off for the rest of the process (see :func:`turn_off`).
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from . import _otel
from ._context import current_context

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    from opentelemetry.trace import Tracer

    from ._handler import TraceFileHandler

__all__ = ["TRACE", "trace_action", "trace_message"]

#: The logging level of trace records, between ``DEBUG`` (10) and ``INFO`` (20).
TRACE: Final = 13
logging.addLevelName(TRACE, "TRACE")

# -- the switch ---------------------------------------------------------------------------

#: Nothing installed yet: the next use of a ``corral`` logger installs the trace file.
_PENDING: Final = 0
#: The trace file is installed: trace as configured.
_ACTIVE: Final = 1
#: Something failed: tracing is off for the rest of the process.
_OFF: Final = 2

_state = _PENDING
#: The OpenTelemetry tracer, once looked up (``None``: no spans).
_tracer: Tracer | None = None
_tracer_resolved = False
#: See :func:`activate`.
_route: Callable[[logging.Logger], tuple[TraceFileHandler | None, bool]] | None = None
_report_lock = threading.Lock()


def activate(route: Callable[[logging.Logger], tuple[TraceFileHandler | None, bool]]) -> None:
    """Mark the trace file as installed; called by :mod:`corral.tracing._install`.

    *route* says where a ``TRACE`` record of a logger goes: the trace file
    handler (or ``None``), and whether any other handler takes it. When only
    the trace file does (the usual case), the line is written straight to it,
    with no ``LogRecord``; otherwise a record is built once, written to the
    file, and handed to :meth:`logging.Logger.handle` for the rest.
    """
    global _state, _route
    _route = route
    _resolve_tracer()
    if _state != _OFF:
        _state = _ACTIVE


def is_off() -> bool:
    """Whether tracing was turned off for the rest of the process."""
    return _state == _OFF


def stop() -> None:
    """Turn tracing off without a report: the process is exiting."""
    global _state
    _state = _OFF


def reset() -> None:
    """Back to the state of a fresh import (tests only, through ``_install``)."""
    global _state, _tracer, _tracer_resolved, _route
    _state = _PENDING
    _route = None
    _tracer = None
    _tracer_resolved = False


def _resolve_tracer() -> None:
    global _tracer, _tracer_resolved
    if not _tracer_resolved:
        _tracer = _otel.resolve_tracer()
        _tracer_resolved = True


def _first_use() -> None:
    """Slow path while nothing is installed: look up OpenTelemetry, install the file."""
    try:
        _resolve_tracer()
        from . import _install

        _install.install()
    except Exception as exc:
        turn_off(exc, "while installing the trace file")


def _routes(logger: logging.Logger) -> tuple[TraceFileHandler | None, bool]:
    route = _route
    if route is None:  # no trace file: only the logger's own handlers
        return None, logger.isEnabledFor(TRACE)
    return route(logger)


def _plain(sink: TraceFileHandler, logger: logging.Logger) -> bool:
    """Whether a line may go straight to *sink*: no filter to run, no record factory to call."""
    return (
        not sink.filters
        and not logger.filters
        and logging.getLogRecordFactory() is logging.LogRecord
    )


def turn_off(exc: BaseException, doing: str) -> None:
    """Turn tracing off for the rest of the process, reporting why on stderr once.

    Called when tracing itself fails: a handler raised, the trace file could
    not be written (``ENOSPC``), the environment was misconfigured. The trace
    file handler is removed and the ``corral`` logger restored.
    """
    global _state
    with _report_lock:
        if _state == _OFF:
            return
        _state = _OFF
    with contextlib.suppress(Exception):  # stderr may be closed: nobody else to tell
        sys.stderr.write(
            f"corral: tracing failed {doing}; it is off for the rest of this process. "
            f"{type(exc).__name__}: {exc}\n"
        )
        sys.stderr.flush()
    files = sys.modules.get(f"{__package__}._install")
    if files is not None:
        files.uninstall()


# -- ids and parents ----------------------------------------------------------------------

#: The ``trace_id`` of the action running in this context (task or thread).
_current: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "corral.tracing.action", default=None
)


def _new_prefix() -> str:
    return os.urandom(6).hex() + "-"


_prefix = _new_prefix()
_counter = itertools.count(1)


def _after_fork_in_child() -> None:
    """Give a forked child its own id prefix (ids stay unique in a shared file) and lock."""
    global _prefix, _counter, _report_lock
    _prefix = _new_prefix()
    _counter = itertools.count(1)
    _report_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)

# -- records ------------------------------------------------------------------------------

_SRCFILE: Final = "(unknown file)"
_FUNCNAME: Final = "(unknown function)"
#: The attributes ``LogRecord.__init__`` sets, in its order, for this Python.
_TEMPLATE: Final[dict[str, Any]] = dict(
    vars(logging.LogRecord("", TRACE, _SRCFILE, 0, "", None, None, _FUNCNAME))
)
_START_TIME: Final[float] = getattr(logging, "_startTime", time.time())
_object_new = object.__new__
_time = time.time
_monotonic = time.monotonic


def _new_record(name: str, msg: str, args: Any) -> logging.LogRecord:
    """A TRACE ``LogRecord`` as ``LogRecord.__init__`` would make it, only faster.

    There is no caller lookup (``pathname``, ``lineno`` and ``funcName`` say
    unknown, as ``Logger.log`` does when it cannot tell). A custom record
    factory (:func:`logging.setLogRecordFactory`) is always honoured.
    """
    factory = logging.getLogRecordFactory()
    if factory is not logging.LogRecord:
        return factory(name, TRACE, _SRCFILE, 0, msg, args, None, _FUNCNAME, None)
    if args and len(args) == 1 and isinstance(args[0], Mapping) and args[0]:
        args = args[0]  # as LogRecord does: trace_message(..., "%(k)s", {"k": 1})
    created = time.time()
    record: logging.LogRecord = _object_new(logging.LogRecord)
    record.__dict__ = {
        **_TEMPLATE,
        "name": name,
        "msg": msg,
        "args": args,
        "created": created,
        "msecs": int((created - int(created)) * 1000) + 0.0,
        "relativeCreated": (created - _START_TIME) * 1000,
        "thread": threading.get_ident() if logging.logThreads else None,
        "threadName": threading.current_thread().name if logging.logThreads else None,
        "process": os.getpid() if logging.logProcesses else None,
        "processName": _process_name() if logging.logMultiprocessing else None,
    }
    return record


def _process_name() -> str:
    mp = sys.modules.get("multiprocessing")
    if mp is not None:
        with contextlib.suppress(Exception):  # as logging does
            return str(mp.current_process().name)
    return "MainProcess"


def _deliver(
    logger: logging.Logger, record: logging.LogRecord, sink: TraceFileHandler | None, others: bool
) -> None:
    """Deliver *record* as :meth:`logging.Logger.handle` would, the trace file included.

    The logger's own filters run first (they may drop the record, or add
    fields the file then shows); the trace file handler writes it whatever
    the logger's handlers are, and the handlers it would reach by the usual
    rules get it next. When those include the trace file handler (a logger
    of its hierarchy), it writes the record then, and only then.
    """
    if logger.filters:
        passed: object = logger.filter(record)  # a replacement record, from Python 3.12
        if not passed:
            return
        if isinstance(passed, logging.LogRecord):
            record = passed
    if sink is not None and not (others and _propagates_to(logger, sink)):
        sink.write_record(record)
    if others:
        logger.callHandlers(record)


def _propagates_to(logger: logging.Logger, handler: logging.Handler) -> bool:
    """Whether ``logger.callHandlers`` reaches *handler* (attached to *logger* or above it)."""
    current: logging.Logger | None = logger
    while current is not None:
        if handler in current.handlers:
            return True
        current = current.parent if current.propagate else None
    return False


def _log(
    logger: logging.Logger,
    msg: str,
    args: Any,
    fields: dict[str, Any] | None,
    sink: TraceFileHandler | None,
    others: bool,
) -> None:
    record = _new_record(logger.name, msg, args)
    if fields is not None:
        record.__dict__.update(fields)
    _deliver(logger, record, sink, others)


def _make_record(
    logger: logging.Logger, msg: str, args: Any, kwargs: dict[str, Any]
) -> logging.LogRecord:
    """The record ``logger.log(TRACE, msg, *args, **kwargs)`` would make (no caller lookup)."""
    unknown = set(kwargs) - {"exc_info", "extra", "stack_info", "stacklevel"}
    if unknown:
        raise TypeError(f"unexpected keyword argument(s) for logging: {', '.join(sorted(unknown))}")
    exc_info = kwargs.get("exc_info")
    if exc_info:
        if isinstance(exc_info, BaseException):
            exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
        elif not isinstance(exc_info, tuple):
            exc_info = sys.exc_info()
    else:
        exc_info = None
    sinfo = "".join(traceback.format_stack()) if kwargs.get("stack_info") else None
    return logger.makeRecord(
        logger.name, TRACE, _SRCFILE, 0, msg, args, exc_info, _FUNCNAME, kwargs.get("extra"), sinfo
    )


# -- how an action ended ------------------------------------------------------------------


def _is_cancel(exc: BaseException) -> bool:
    if isinstance(exc, KeyboardInterrupt | SystemExit):
        return True
    # Neither backend is imported here: an exception of theirs means it is loaded.
    trio = sys.modules.get("trio")
    if trio is not None and isinstance(exc, trio.Cancelled):
        return True
    asyncio = sys.modules.get("asyncio")
    return asyncio is not None and isinstance(exc, asyncio.CancelledError)


def _is_timeout(exc: BaseException) -> bool:
    if isinstance(exc, TimeoutError):
        return True
    trio = sys.modules.get("trio")
    return trio is not None and isinstance(exc, trio.TooSlowError)


def _all_leaves(group: BaseExceptionGroup[Any], test: Callable[[BaseException], bool]) -> bool:
    return all(
        _all_leaves(e, test) if isinstance(e, BaseExceptionGroup) else test(e)
        for e in group.exceptions
    )


def _event_of(exc: BaseException | None) -> str:
    """The finish event for an action left with *exc* (see :func:`trace_action`)."""
    if exc is None or isinstance(exc, GeneratorExit):
        return "exit"
    if isinstance(exc, BaseExceptionGroup):
        if _all_leaves(exc, _is_cancel):
            return "cancel"
        return "timeout" if _all_leaves(exc, _is_timeout) else "error"
    if _is_cancel(exc):
        return "cancel"
    return "timeout" if _is_timeout(exc) else "error"


def _error_fields(exc: BaseException) -> dict[str, str]:
    try:
        message = getattr(exc, "message", None)
        if not isinstance(message, str):
            message = str(exc)
        error = message or repr(exc)
    except Exception:
        error = f"<unprintable {type(exc).__name__}>"
    try:
        stacktrace = "".join(traceback.format_exception(exc))
    except Exception:
        stacktrace = f"<no traceback for {type(exc).__name__}>"
    return {"error": error, "error_type": type(exc).__name__, "stacktrace": stacktrace}


def _format(message: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    try:
        if args:
            return message % args
        if kwargs:
            return message % kwargs
    except Exception:
        return f"{message} {args or kwargs!r}"
    return message


# -- the API ------------------------------------------------------------------------------


class _TraceAction:
    """The context manager :func:`trace_action` returns (one use only)."""

    __slots__ = (
        "_action",
        "_args",
        "_detail",
        "_json",
        "_kwargs",
        "_logged",
        "_logger",
        "_message",
        "_parent_id",
        "_span",
        "_start",
        "_start_time",
        "_token",
        "_trace_id",
        "_where",
    )

    def __init__(
        self,
        logger: logging.Logger,
        action: str,
        message: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        self._logger = logger
        self._action = action
        self._message = message
        self._args = args
        self._kwargs = kwargs
        self._token: contextvars.Token[str | None] | None = None

    def __enter__(self) -> None:
        if _state != _ACTIVE:
            if _state == _OFF:
                return
            _first_use()
            if _state == _OFF:
                return
        sink, others = _routes(self._logger)
        logged = sink is not None or others
        tracer = _tracer
        if not logged and tracer is None:
            return
        self._logged = logged
        self._span: _otel.ActionSpan | None = None
        self._json: tuple[str, str, str] | None = None
        self._trace_id = trace_id = f"{_prefix}{next(_counter)}"
        self._parent_id = parent_id = _current.get()
        self._where = where = current_context()
        self._token = _current.set(trace_id)
        self._detail = detail = (
            _format(self._message, self._args, self._kwargs)
            if self._args or self._kwargs
            else self._message
        )
        self._start_time = start_time = _time()
        self._start = _monotonic()
        try:
            if tracer is not None:
                self._span = _otel.ActionSpan(tracer, self._action, detail, trace_id, parent_id)
            if logged:
                if sink is not None and not others and _plain(sink, self._logger):
                    self._json = sink.action_json(
                        self._action, detail, trace_id, parent_id, start_time, where
                    )
                    sink.write_action(self._json, "enter", start_time)
                else:
                    action = self._action
                    _log(
                        self._logger,
                        f"{action}: {detail} (enter)",
                        None,
                        {
                            "action": action,
                            "detail": detail,
                            "event": "enter",
                            "trace_id": trace_id,
                            "parent_id": parent_id,
                            "start_time": start_time,
                            **where.fields(),
                        },
                        sink,
                        others,
                    )
        except Exception as exc:
            turn_off(exc, f"at the start of action {self._action!r}")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        token = self._token
        if token is None:
            return
        self._token = None
        try:
            _current.reset(token)
        except ValueError:  # left in another context (an async generator's finalizer)
            _current.set(self._parent_id)
        duration = _monotonic() - self._start
        try:
            event = "exit" if exc is None else _event_of(exc)
            if self._span is not None:
                self._span.end(event, exc)
            if self._logged and _state != _OFF:
                error = _error_fields(exc) if event == "error" and exc is not None else None
                sink, others = _routes(self._logger)
                if sink is not None and not others and _plain(sink, self._logger):
                    json = self._json
                    if json is None:  # the handlers changed since the enter record
                        json = sink.action_json(
                            self._action,
                            self._detail,
                            self._trace_id,
                            self._parent_id,
                            self._start_time,
                            self._where,
                        )
                    sink.write_action(json, event, _time(), duration, error)
                else:
                    action = self._action
                    detail = self._detail
                    fields = {
                        "action": action,
                        "detail": detail,
                        "event": event,
                        "trace_id": self._trace_id,
                        "parent_id": self._parent_id,
                        "start_time": self._start_time,
                        **self._where.fields(),
                        "duration": duration,
                    }
                    if error is not None:
                        fields.update(error)
                    _log(self._logger, f"{action}: {detail} ({event})", None, fields, sink, others)
        except Exception as err:
            turn_off(err, f"at the end of action {self._action!r}")


def trace_action(
    logger: logging.Logger, action: str, message: str, *args: Any, **kwargs: Any
) -> contextlib.AbstractContextManager[None, None]:
    """Trace a block of work: a ``TRACE`` record when it starts and when it ends.

    Use it as a (sync) context manager, around sync or async code, in any
    task or thread, under trio or asyncio::

        with trace_action(logger, "Subprocess", "run %s", shlex.join(cmd)):
            await run(cmd)

    The start record has ``event="enter"`` and ``start_time`` (seconds since
    the epoch). The end record has ``duration`` (seconds, monotonic) and an
    ``event`` saying how the block was left:

    * ``"exit"``: normally (or by ``GeneratorExit``, a generator being closed);
    * ``"cancel"``: by cancellation (trio ``Cancelled``, asyncio
      ``CancelledError``), ``KeyboardInterrupt`` or ``SystemExit``;
    * ``"timeout"``: by ``TimeoutError`` (or trio's ``TooSlowError``);
    * ``"error"``: by any other exception, with ``error`` (its message),
      ``error_type`` (its class name) and ``stacktrace``.

    An exception group counts as ``cancel`` when every exception in it is a
    cancellation, as ``timeout`` when every one is a ``TimeoutError``, and as
    ``error`` otherwise. Both records carry ``action``, ``detail`` (*message*
    formatted with *args*, or with *kwargs*), ``trace_id``, and ``parent_id``:
    the ``trace_id`` of the action around this one in the same task or thread,
    or in the task that started this task (``None`` at the top). The record
    message is ``"<action>: <detail> (<event>)"``.

    When *logger* is not enabled for ``TRACE`` (and OpenTelemetry is off),
    nothing is done besides running the block. The first use of a logger of
    the ``corral`` hierarchy installs the trace file (see
    :func:`corral.tracing.init`). With ``CORRAL_OTEL=1`` and OpenTelemetry
    installed, the block also runs in an OpenTelemetry span named *action*.

    **Cancellation:** this is not a checkpoint and does not catch anything:
    a cancellation, like any exception, is recorded and then propagates
    unchanged (the same object). Tracing never raises into the traced code: if
    logging fails, that is reported once on stderr and tracing is turned off.

    Args:
        logger: Where to log. Usually ``logging.getLogger(__name__)``.
        action: The kind of work, e.g. ``"Subprocess"``, ``"Sandbox"``.
        message: A description of this piece of work, a ``%``-format string.
        *args: Arguments for *message*.
        **kwargs: Named arguments for *message* (used when there are no *args*).

    Returns:
        A context manager for one ``with`` block.
    """
    return _TraceAction(logger, action, message, args, kwargs)


def trace_message(
    logger: logging.Logger, category: str, message: str, *args: Any, **kwargs: Any
) -> None:
    """Log one ``TRACE`` record, ``"[<category>] <message>"``.

    *args* format the message lazily, as with :meth:`logging.Logger.log`;
    *kwargs* are passed to it (``extra=``, ``exc_info=``, ...). Like
    :func:`trace_action`, the first use of a ``corral`` logger installs the
    trace file, a disabled logger costs almost nothing, and a failure to log
    is reported once and turns tracing off instead of raising. Not a
    checkpoint.

    Args:
        logger: Where to log.
        category: A short tag, shown in brackets before the message.
        message: The message, a ``%``-format string.
        *args: Arguments for *message*.
        **kwargs: Keyword arguments for :meth:`logging.Logger.log`.
    """
    if _state != _ACTIVE:
        if _state == _OFF:
            return
        _first_use()
        if _state == _OFF:
            return
    sink, others = _routes(logger)
    if sink is None and not others:
        return
    try:
        msg = f"[{category}] {message}"
        if kwargs:
            _deliver(logger, _make_record(logger, msg, args, kwargs), sink, others)
        elif sink is not None and not others and _plain(sink, logger):
            sink.write_message(msg, args, current_context())
        else:
            _log(logger, msg, args, current_context().fields(), sink, others)
    except Exception as exc:
        turn_off(exc, f"logging a {category!r} message")
