"""Reading trace files: record models, :func:`read_trace_file`, :func:`list_trace_files`.

A trace file is JSON Lines, one object per log record, written by the file
handler in :mod:`corral.tracing._handler`: ``trace-<pid>.log`` while the process
runs, gzipped to ``trace-<pid>.log.gz`` when it exits. Records that carry an
``action`` key come from ``trace_action`` and validate as
:class:`ActionTraceRecord`; all others validate as :class:`SimpleTraceRecord`.
Both keep unknown keys (a writer's ``extra`` fields) as pydantic extras.

Reading is forgiving, because the files are written by processes that may be
killed mid-write: a truncated last line, a line that is not JSON, or a record
that fails validation is skipped and counted, and :attr:`TraceFile.note` says
so in one line for the command line to print. The library itself never prints.

Reading is also wary, because the files hold text a model chose and may be
crafted outright: only regular files are opened (a FIFO is refused, not
waited on), a file is read one line at a time, gzipped or not, a line longer
than :data:`MAX_LINE_BYTES` is skipped without being kept in memory, and a
number a writer could not have written (an infinite ``duration``, a
``start_time`` in the year 31 million) fails validation like any other wrong
value, so that whatever reads a record can format it.

Nothing here imports click or rich: this module is safe to use from library
code and from tests.
"""

from __future__ import annotations

import errno
import gzip
import os
import stat
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, BinaryIO, Protocol, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import from_json

from .._core._files import file_kind
from ._storage import is_trace_file_name

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = [
    "FINISH_EVENTS",
    "LATEST_START_TIME",
    "MAX_LINE_BYTES",
    "ActionTraceRecord",
    "SimpleTraceRecord",
    "TraceFile",
    "TraceFileInfo",
    "TraceRecord",
    "is_trace_file_name",
    "list_trace_files",
    "read_trace_file",
]

#: The ``event`` values that end an action (``"enter"`` starts one).
FINISH_EVENTS = frozenset({"exit", "cancel", "timeout", "error"})

#: The longest line a trace file may hold, not counting its newline: 16 MiB. A
#: record is a command line or a traceback, far shorter; a longer line is read
#: past in small pieces, never held whole, and counted as skipped.
MAX_LINE_BYTES = 16 << 20

#: The latest ``start_time`` a record may hold: 9999-01-01 UTC, so that the
#: local date and time of any valid start can be shown in any time zone.
LATEST_START_TIME = 253_370_764_800.0

_SKIP_CHUNK = 1 << 20
"""How much of an over-long line is read at a time while it is skipped."""

#: Seconds since the epoch, from 1970 to :data:`LATEST_START_TIME`.
_StartTime: TypeAlias = Annotated[float, Field(ge=0.0, le=LATEST_START_TIME, allow_inf_nan=False)]
#: A duration in seconds: finite and not negative (the writer measures it on a
#: monotonic clock).
_Duration: TypeAlias = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]


class _TraceRecordBase(BaseModel):
    """The keys every record has; anything else is kept as an extra."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    timestamp: str
    """When the record was logged: ISO 8601 local time with its UTC offset."""
    level: str
    """The logging level name: ``"TRACE"``, ``"INFO"``, ``"WARNING"``, ..."""
    message: str
    """The formatted log message."""
    task: str | None = None
    """The name of the task scope the record was written in (``None`` outside one)."""
    sample_id: int | str | None = None
    """The id of the sample the record was written in (``None`` outside one)."""
    span_id: str | None = None
    """The id of the innermost span the record was written in (``None`` outside one).

    Files written before corral recorded ``task``, ``sample_id`` and
    ``span_id`` read with all three ``None``.
    """


class SimpleTraceRecord(_TraceRecordBase):
    """A record logged with ``trace_message`` or any other logging call.

    Records at a level other than ``TRACE`` also say where they were logged
    from, in ``module``, ``function`` and ``line``.
    """

    module: str | None = None
    function: str | None = None
    line: int | None = None


class ActionTraceRecord(_TraceRecordBase):
    """A record logged by ``trace_action``: the start or the end of one action.

    An action logs an ``enter`` record when it starts and one finish record
    (``exit``, ``cancel``, ``timeout`` or ``error``) when it ends; both carry
    the same ``trace_id``. ``parent_id`` is the ``trace_id`` of the action that
    was running around it (in the same task, or in the task that started it),
    so the actions of a file form a tree.

    ``event`` is kept as a plain string, so that a file written by a newer
    writer with an event this reader does not know still reads; the
    ``anomalies`` command skips such records with a note.
    """

    action: str
    """What kind of work: ``"Subprocess"``, ``"Sandbox"``, ``"Subtask"``, ..."""
    detail: str = ""
    """The message given to ``trace_action``, formatted with its arguments."""
    event: str
    """``"enter"``, ``"exit"``, ``"cancel"``, ``"timeout"`` or ``"error"``."""
    trace_id: str
    """Identifies the action; shared by its enter and finish records."""
    parent_id: str | None = None
    """The ``trace_id`` of the enclosing action, or ``None`` at the top."""
    start_time: _StartTime | None = None
    """When the action started (seconds since the epoch); on enter and finish records.

    A record whose start is before 1970 or after :data:`LATEST_START_TIME`, or
    not a finite number, fails validation.
    """
    duration: _Duration | None = None
    """How long the action ran, in seconds; on finish records.

    A record whose duration is negative or not a finite number fails validation.
    """
    error: str | None = None
    """The exception's message; on ``error`` records."""
    error_type: str | None = None
    """The exception's class name; on ``error`` records."""
    stacktrace: str | None = None
    """The formatted traceback; on ``error`` records."""


#: One record of a trace file.
TraceRecord: TypeAlias = ActionTraceRecord | SimpleTraceRecord


@dataclass(frozen=True, slots=True)
class TraceFile:
    """The readable records of one trace file, and what could not be read.

    Attributes:
        path: The file that was read.
        records: The records, in file order.
        skipped: How many lines could not be read (not JSON, truncated, not an
            object, or failing validation). Blank lines are not counted.
        problem: What was wrong with the first skipped line, or ``None``.
    """

    path: Path
    records: tuple[TraceRecord, ...]
    skipped: int = 0
    problem: str | None = None

    @property
    def note(self) -> str | None:
        """A one-line note about skipped records, for stderr; ``None`` if none were."""
        if not self.skipped:
            return None
        return (
            f"note: skipped {self.skipped} trace record(s) in {self.path} "
            f"that could not be read: {self.problem}"
        )

    @property
    def actions(self) -> list[ActionTraceRecord]:
        """The records logged by ``trace_action``, in file order."""
        return [r for r in self.records if isinstance(r, ActionTraceRecord)]


@dataclass(frozen=True, slots=True)
class TraceFileInfo:
    """A trace file found by :func:`list_trace_files`.

    Attributes:
        path: The file.
        mtime: Its modification time, in seconds since the epoch.
    """

    path: Path
    mtime: float


def list_trace_files(directory: Path) -> list[TraceFileInfo]:
    """List the trace files in *directory*, newest first (by modification time).

    Only regular files whose names :func:`is_trace_file_name` accepts are
    listed. A directory that does not exist holds no trace files; a file that
    disappears while the directory is read (rotated away by another process)
    is left out.

    Args:
        directory: The trace directory.

    Returns:
        One :class:`TraceFileInfo` per file, the most recently modified first.

    Raises:
        OSError: If the directory exists but cannot be read (``PermissionError``).
    """
    found: list[TraceFileInfo] = []
    try:
        with os.scandir(directory) as listing:
            entries = list(listing)
    except (FileNotFoundError, NotADirectoryError):
        return []
    for entry in entries:
        if not is_trace_file_name(entry.name):
            continue
        try:
            if not entry.is_file():
                continue
            mtime = entry.stat().st_mtime
        except FileNotFoundError:
            continue
        found.append(TraceFileInfo(Path(entry.path), mtime))
    found.sort(key=lambda info: (info.mtime, info.path.name), reverse=True)
    return found


def read_trace_file(path: str | os.PathLike[str]) -> TraceFile:
    """Read every record of a trace file, plain (``.log``) or gzipped (``.gz``).

    Lines that cannot be read are skipped and counted in the result rather
    than raising: a last line cut short by a crash, a line that is not JSON or
    not a JSON object (JSON nested too deep included), a record that fails
    validation, a line longer than :data:`MAX_LINE_BYTES`, and (for a ``.gz``
    file) compressed data that ends early. :attr:`TraceFile.note` describes
    them in one line.

    The file is read one line at a time, so a small gzipped file that
    expands to one huge line is no more than :data:`MAX_LINE_BYTES` in
    memory; the records read are all kept. Only a regular file is read: the
    file is opened without blocking and checked before anything is read from
    it, so a FIFO with no writer is refused at once. This function does
    blocking file I/O: from async code, run it in a worker thread.

    Args:
        path: The trace file.

    Returns:
        The records and a count of what was skipped.

    Raises:
        OSError: If the file cannot be opened (``FileNotFoundError`` if it
            does not exist, ``PermissionError``), or read; or if it is not a
            regular file: ``IsADirectoryError`` for a directory, and
            ``EINVAL`` for a FIFO, socket or device, naming what it is.
    """
    path = Path(path)
    records: list[TraceRecord] = []
    skipped = 0
    problem: str | None = None

    def skip(why: str) -> None:
        nonlocal skipped, problem
        skipped += 1
        if problem is None:
            problem = why

    for number, line in _numbered_lines(path, skip):
        where = f"line {number}"
        if line is None:
            skip(f"{where}: longer than {MAX_LINE_BYTES >> 20} MiB, not read")
            continue
        if not line.strip():
            continue
        try:
            data = from_json(line)
        except ValueError as exc:
            if not line.endswith(b"\n"):
                skip(f"{where}: truncated last line (the writer stopped mid-record)")
            else:
                skip(f"{where}: not valid JSON ({exc})")
            continue
        if not isinstance(data, dict):
            skip(f"{where}: not a JSON object")
            continue
        try:
            records.append(_validate(data))
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(part) for part in first["loc"]) or "record"
            skip(f"{where}: {loc}: {first['msg']}")
    return TraceFile(path, tuple(records), skipped, problem)


def _validate(data: dict[str, Any]) -> TraceRecord:
    if "action" in data:
        return ActionTraceRecord.model_validate(data)
    return SimpleTraceRecord.model_validate(data)


class _LineReader(Protocol):
    """A binary file, plain or gzipped, as far as reading lines goes."""

    def readline(self, size: int, /) -> bytes: ...


def _open_regular(path: Path) -> BinaryIO:
    """Open *path* for reading if it is a regular file, without blocking on a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno != errno.ENXIO:  # ENXIO: a socket, or a device with no driver
            raise
        _check_regular(os.stat(path).st_mode, path)
        raise
    try:
        _check_regular(os.fstat(fd).st_mode, path)
        os.set_blocking(fd, True)
        return open(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _check_regular(mode: int, path: Path) -> None:
    """Raise the error naming what *path* is, unless *mode* is a regular file's."""
    if stat.S_ISREG(mode):
        return
    why = f"only regular files are read as trace files; this is {file_kind(mode)}"
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, why, str(path))
    raise OSError(errno.EINVAL, why, str(path))


def _bounded_lines(f: _LineReader) -> Iterator[bytes | None]:
    """Each line of *f*, or ``None`` for a line longer than :data:`MAX_LINE_BYTES`.

    An over-long line is read past in pieces of :data:`_SKIP_CHUNK` bytes.
    """
    while line := f.readline(MAX_LINE_BYTES + 1):
        if len(line) <= MAX_LINE_BYTES or line.endswith(b"\n"):
            yield line
            continue
        while (rest := f.readline(_SKIP_CHUNK)) and not rest.endswith(b"\n"):
            pass
        yield None


def _numbered_lines(path: Path, skip: Callable[[str], None]) -> Iterator[tuple[int, bytes | None]]:
    """Yield ``(line number, line or None if too long)``; ``skip`` if gzip data ends early."""
    with _open_regular(path) as raw:
        if not path.name.endswith(".gz"):
            yield from enumerate(_bounded_lines(raw), start=1)
            return
        number = 0
        with gzip.GzipFile(fileobj=raw, mode="rb") as f:
            try:
                for number, line in enumerate(_bounded_lines(f), start=1):
                    yield number, line
            except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
                skip(f"after line {number}: compressed data ends early or is corrupt ({exc})")
