"""Reading trace files: record models, skipped lines and their note, gzip, listing.

The files here are written by hand, following the record format the file
handler writes (JSON Lines; see docs/tracing.md), so these tests do not depend
on the writer. The helpers are shared with ``test_cli.py``.
"""

from __future__ import annotations

import gzip
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from corral.tracing._records import (
    ActionTraceRecord,
    SimpleTraceRecord,
    TraceFile,
    list_trace_files,
    read_trace_file,
)

#: A fixed wall-clock time for the records' ``start_time``.
T0 = 1_760_000_000.0


def stamp(epoch: float) -> str:
    """An ISO 8601 local timestamp with its offset, as the writer formats it."""
    return datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="microseconds")


def action(
    event: str,
    trace_id: str,
    name: str = "Subprocess",
    detail: str = "sleep 1",
    *,
    parent_id: str | None = None,
    start: float | None = T0,
    duration: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One record of ``trace_action``: *event* is ``"enter"`` or a finish event.

    ``start=None`` leaves ``start_time`` out, as a reader must expect of a finish record.
    """
    record: dict[str, Any] = {
        "timestamp": stamp((start or T0) + (duration or 0.0)),
        "level": "TRACE",
        "message": f"{name}: {detail} ({event})",
        "action": name,
        "detail": detail,
        "event": event,
        "trace_id": trace_id,
        "parent_id": parent_id,
    }
    if start is not None:
        record["start_time"] = start
    if duration is not None:
        record["duration"] = duration
    record.update(extra)
    return record


def message(text: str, level: str = "TRACE", **extra: Any) -> dict[str, Any]:
    """A record of ``trace_message`` (or of any logging call, for other levels)."""
    record: dict[str, Any] = {"timestamp": stamp(T0), "level": level, "message": text}
    if level != "TRACE":
        record.update(module="sample", function="run", line=12)
    record.update(extra)
    return record


def write_trace(path: Path, records: list[dict[str, Any]], tail: str = "") -> Path:
    """Write *records* as JSON Lines (gzipped if *path* ends in ``.gz``), then *tail* as is."""
    text = "".join(json.dumps(record) + "\n" for record in records) + tail
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_action_and_simple_records_are_told_apart(tmp_path: Path) -> None:
    path = write_trace(
        tmp_path / "trace-1.log",
        [
            action("enter", "a1", parent_id="p0", attempt=7),
            message("[Sandbox] connected"),
            message("disk almost full", level="WARNING"),
            action("exit", "a1", parent_id="p0", duration=1.5),
        ],
    )
    traced = read_trace_file(path)
    assert traced.path == path
    assert traced.skipped == 0
    assert traced.note is None
    kinds = [type(record) for record in traced.records]
    assert kinds == [ActionTraceRecord, SimpleTraceRecord, SimpleTraceRecord, ActionTraceRecord]
    enter, note, warning, exit_ = traced.records
    assert isinstance(enter, ActionTraceRecord)
    assert (enter.trace_id, enter.parent_id, enter.start_time) == ("a1", "p0", T0)
    assert enter.model_extra == {"attempt": 7}
    assert note.message == "[Sandbox] connected"
    assert isinstance(warning, SimpleTraceRecord)
    assert (warning.level, warning.module, warning.function, warning.line) == (
        "WARNING",
        "sample",
        "run",
        12,
    )
    assert isinstance(exit_, ActionTraceRecord)
    assert exit_.duration == 1.5
    assert [r.event for r in traced.actions] == ["enter", "exit"]


def test_error_record_keeps_error_fields(tmp_path: Path) -> None:
    record = action(
        "error",
        "e1",
        duration=0.25,
        error="boom",
        error_type="ValueError",
        stacktrace="Traceback ...\nValueError: boom\n",
    )
    traced = read_trace_file(write_trace(tmp_path / "trace-1.log", [record]))
    (read,) = traced.actions
    assert (read.error, read.error_type) == ("boom", "ValueError")
    assert read.stacktrace is not None
    assert read.stacktrace.endswith("ValueError: boom\n")


def test_truncated_last_line_and_invalid_record_are_skipped_with_a_note(tmp_path: Path) -> None:
    """A crash leaves half a line at the end; a bad record in the middle is skipped too."""
    invalid = action("enter", "x")
    del invalid["trace_id"]
    good = action("enter", "a1")
    path = write_trace(
        tmp_path / "trace-1.log",
        [good, invalid, action("exit", "a1", duration=2.0)],
        tail=json.dumps(action("enter", "a2"))[:40],
    )
    traced = read_trace_file(path)
    assert [(r.trace_id, r.event) for r in traced.actions] == [("a1", "enter"), ("a1", "exit")]
    assert traced.skipped == 2
    assert traced.problem == "line 2: trace_id: Field required"
    assert traced.note == (
        f"note: skipped 2 trace record(s) in {path} that could not be read: "
        "line 2: trace_id: Field required"
    )


def test_a_truncated_last_line_alone_is_named_as_such(tmp_path: Path) -> None:
    path = write_trace(tmp_path / "trace-1.log", [message("one")], tail='{"timestamp": "20')
    traced = read_trace_file(path)
    assert len(traced.records) == 1
    assert traced.note is not None
    assert "line 2: truncated last line" in traced.note


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("{not json\n", "line 2: not valid JSON"),
        ("[1, 2]\n", "line 2: not a JSON object"),
        ('{"timestamp": "t", "level": 5, "message": "m"}\n', "line 2: level:"),
        ("\xff\n", "line 2: not valid JSON"),
    ],
    ids=["not-json", "not-object", "wrong-type", "not-utf8"],
)
def test_unreadable_lines_in_the_middle(tmp_path: Path, line: str, problem: str) -> None:
    path = tmp_path / "trace-1.log"
    first, last = (json.dumps(message(text)) + "\n" for text in ("first", "last"))
    path.write_bytes(first.encode() + line.encode("latin-1") + last.encode())
    traced = read_trace_file(path)
    assert [r.message for r in traced.records] == ["first", "last"]
    assert traced.skipped == 1
    assert traced.problem is not None
    assert traced.problem.startswith(problem)


def test_blank_lines_are_not_counted(tmp_path: Path) -> None:
    path = write_trace(tmp_path / "trace-1.log", [message("a")], tail="\n  \n")
    traced = read_trace_file(path)
    assert (len(traced.records), traced.skipped) == (1, 0)


def test_gzipped_file_is_read(tmp_path: Path) -> None:
    path = write_trace(
        tmp_path / "trace-1.log.gz",
        [action("enter", "a1"), message("[Subtask] hello")],
        tail='{"cut',
    )
    traced = read_trace_file(path)
    assert [r.message for r in traced.records] == ["Subprocess: sleep 1 (enter)", "[Subtask] hello"]
    assert traced.skipped == 1
    assert traced.problem == "line 3: truncated last line (the writer stopped mid-record)"


def test_gzip_data_that_ends_early_keeps_what_was_read(tmp_path: Path) -> None:
    whole = write_trace(tmp_path / "whole.log.gz", [message(f"m{i}") for i in range(2000)])
    cut = tmp_path / "trace-1.log.gz"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    traced = read_trace_file(cut)
    assert 0 < len(traced.records) < 2000
    assert [r.message for r in traced.records[:2]] == ["m0", "m1"]
    assert traced.note is not None
    assert "compressed data ends early" in traced.note


def test_a_gz_file_that_is_not_gzip_is_noted(tmp_path: Path) -> None:
    path = write_trace(tmp_path / "trace-1.log", [message("plain")])
    traced = read_trace_file(path.rename(tmp_path / "trace-1.log.gz"))
    assert traced.records == ()
    assert traced.problem is not None
    assert traced.problem.startswith("after line 0: compressed data ends early or is corrupt")


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_trace_file(tmp_path / "trace-404.log")


def test_trace_file_has_no_note_without_skips(tmp_path: Path) -> None:
    assert TraceFile(tmp_path, ()).note is None


def test_list_trace_files_newest_first(tmp_path: Path) -> None:
    names = ["trace-1.log.gz", "trace-2.log", "trace-3.log.gz"]
    for age, name in zip([300, 100, 200], names, strict=True):
        path = write_trace(tmp_path / name, [message(name)])
        os.utime(path, (T0 - age, T0 - age))
    (tmp_path / "notes.txt").write_text("not a trace")
    (tmp_path / "trace-9.log.tmp").write_text("not a trace either")
    (tmp_path / "trace-dir.log").mkdir()
    found = list_trace_files(tmp_path)
    assert [info.path.name for info in found] == ["trace-2.log", "trace-3.log.gz", "trace-1.log.gz"]
    assert [info.mtime for info in found] == [T0 - 100, T0 - 200, T0 - 300]


def test_list_trace_files_of_a_missing_directory_is_empty(tmp_path: Path) -> None:
    assert list_trace_files(tmp_path / "nowhere") == []


def test_where_fields_are_read_and_optional(tmp_path: Path) -> None:
    """``task``, ``sample_id`` and ``span_id`` are read when present, ``None`` in old files."""
    path = write_trace(
        tmp_path / "trace-where.log",
        [
            action("enter", "a1", task="t", sample_id=3, span_id="s1"),
            message("note", task="t", sample_id="str-id", span_id=None),
            action("enter", "a2"),  # an old file's record
            message("old"),
        ],
    )
    new_action, new_message, old_action, old_message = read_trace_file(path).records
    assert (new_action.task, new_action.sample_id, new_action.span_id) == ("t", 3, "s1")
    assert (new_message.task, new_message.sample_id, new_message.span_id) == ("t", "str-id", None)
    for old in (old_action, old_message):
        assert (old.task, old.sample_id, old.span_id) == (None, None, None)
        assert old.model_extra == {}
    assert "task" not in old_action.model_dump(exclude_unset=True)


def test_a_wrong_where_field_fails_validation(tmp_path: Path) -> None:
    path = write_trace(
        tmp_path / "trace-bad-where.log", [action("enter", "a1", sample_id=[1]), message("ok")]
    )
    traced = read_trace_file(path)
    assert [r.message for r in traced.records] == ["ok"]
    assert traced.skipped == 1
    assert traced.problem is not None
    assert "sample_id" in traced.problem


def test_writers_are_the_processes_holding_the_file(tmp_path: Path) -> None:
    from corral.tracing._storage import open_shared, writers

    path = tmp_path / "trace-held.log"
    fd, locked = open_shared(path)
    try:
        assert locked
        assert writers(path) == (os.getpid(),)
        assert writers(tmp_path / "trace-other.log") is None  # no such file: cannot tell
    finally:
        os.close(fd)
    assert writers(path) == ()
