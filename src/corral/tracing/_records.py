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

Nothing here imports click or rich: this module is safe to use from library
code and from tests.
"""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import from_json

from ._storage import is_trace_file_name

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = [
    "FINISH_EVENTS",
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


class _TraceRecordBase(BaseModel):
    """The keys every record has; anything else is kept as an extra."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    timestamp: str
    """When the record was logged: ISO 8601 local time with its UTC offset."""
    level: str
    """The logging level name: ``"TRACE"``, ``"INFO"``, ``"WARNING"``, ..."""
    message: str
    """The formatted log message."""


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
    start_time: float | None = None
    """When the action started (seconds since the epoch); on enter and finish records."""
    duration: float | None = None
    """How long the action ran, in seconds; on finish records."""
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
    not a JSON object, a record that fails validation, and (for a ``.gz``
    file) compressed data that ends early. :attr:`TraceFile.note` describes
    them in one line.

    The whole file is read into memory. This function does blocking file I/O:
    from async code, run it in a worker thread.

    Args:
        path: The trace file.

    Returns:
        The records and a count of what was skipped.

    Raises:
        OSError: If the file cannot be opened (``FileNotFoundError`` if it
            does not exist).
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
        if not line.strip():
            continue
        where = f"line {number}"
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


def _numbered_lines(path: Path, skip: Callable[[str], None]) -> Iterator[tuple[int, bytes]]:
    """Yield ``(line number, line)``, calling ``skip`` if gzip data ends early."""
    if path.name.endswith(".gz"):
        number = 0
        with gzip.open(path, "rb") as f:
            try:
                for number, line in enumerate(f, start=1):
                    yield number, line
            except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
                skip(f"after line {number}: compressed data ends early or is corrupt ({exc})")
    else:
        with path.open("rb") as f:
            yield from enumerate(f, start=1)
