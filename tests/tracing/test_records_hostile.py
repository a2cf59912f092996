"""``read_trace_file`` on hostile input: what the command line relies on holds for any reader.

A record that validates can be formatted (its start time is a date, its
duration a finite number); a line longer than the bound is skipped unread; a
FIFO is refused without waiting for a writer; a truncated last line is still
only a note.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import threading
from datetime import datetime
from pathlib import Path

import pytest

from corral.tracing._records import (
    LATEST_START_TIME,
    MAX_LINE_BYTES,
    TraceFile,
    read_trace_file,
)

from .test_records import action, message, write_trace


def good_line(text: str) -> bytes:
    return json.dumps(message(text)).encode() + b"\n"


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ('"start_time": 1e400', "line 2: start_time: Input should be a finite number"),
        ('"start_time": NaN', "line 2: start_time: Input should be a finite number"),
        ('"start_time": 1e15', "line 2: start_time: Input should be less than or equal to"),
        ('"start_time": -1', "line 2: start_time: Input should be greater than or equal to 0"),
        ('"duration": -1e400', "line 2: duration: Input should be a finite number"),
        ('"duration": -0.5', "line 2: duration: Input should be greater than or equal to 0"),
    ],
)
def test_a_number_no_writer_writes_fails_validation(tmp_path: Path, raw: str, problem: str) -> None:
    record = json.dumps(action("cancel", "x", duration=1.0))[:-1] + ", " + raw + "}\n"
    key = raw.split(":")[0]
    record = record.replace(f", {key}: ", f', {key[:-1]}_old": ', 1)
    path = tmp_path / "trace-1.log"
    path.write_bytes(good_line("before") + record.encode() + good_line("after"))
    traced = read_trace_file(path)
    assert [r.message for r in traced.records] == ["before", "after"]
    assert traced.skipped == 1
    assert traced.problem is not None
    assert traced.problem.startswith(problem)


def test_every_valid_start_time_is_a_local_date() -> None:
    for start in (0.0, LATEST_START_TIME):
        assert datetime.fromtimestamp(start).astimezone().year in (1969, 1970, 9998, 9999)


@pytest.mark.parametrize("name", ["trace-1.log", "trace-1.log.gz"])
def test_a_long_line_is_skipped_and_reading_goes_on(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    opener = gzip.open if name.endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(good_line("before"))
        f.write(b"x" * (MAX_LINE_BYTES + 1) + b"\n")
        f.write(b"y" * MAX_LINE_BYTES + b"\n")  # at the bound: read, then not JSON
        f.write(good_line("after"))
        f.write(b"z" * (3 * MAX_LINE_BYTES))  # too long, and the last line
    traced = read_trace_file(path)
    assert [r.message for r in traced.records] == ["before", "after"]
    assert traced.skipped == 3
    assert traced.problem == f"line 2: longer than {MAX_LINE_BYTES >> 20} MiB, not read"


def test_a_truncated_last_line_is_still_only_a_note(tmp_path: Path) -> None:
    """A harness SIGKILLed mid-write leaves half a record: read the rest, note the half."""
    for name in ("trace-1.log", "trace-2.log.gz"):
        path = write_trace(
            tmp_path / name, [action("enter", "a")], tail=json.dumps(message("cut"))[:30]
        )
        traced = read_trace_file(path)
        assert [r.event for r in traced.actions] == ["enter"]
        assert traced.problem == "line 2: truncated last line (the writer stopped mid-record)"


def read_in_a_thread(path: Path) -> TraceFile | BaseException:
    """Read *path* in a thread; if that blocks, unblock it with a writer and fail."""
    outcome: list[TraceFile | BaseException] = []

    def target() -> None:
        try:
            outcome.append(read_trace_file(path))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(10)
    if thread.is_alive():
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))  # EOF for the blocked reader
        thread.join(10)
        pytest.fail(f"reading {path} blocked")
    return outcome[0]


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "trace-1.log"
    os.mkfifo(fifo)
    outcome = read_in_a_thread(fifo)
    assert isinstance(outcome, OSError)
    assert outcome.errno == errno.EINVAL
    assert outcome.filename == str(fifo)
    assert outcome.strerror == "only regular files are read as trace files; this is a FIFO"


def test_a_directory_is_refused_as_such(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError, match="this is a directory"):
        read_trace_file(tmp_path)
