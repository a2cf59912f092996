"""``corral trace``: list, dump, anomalies and tree, through click's runner and for real.

Every test points ``CORRAL_TRACE_FILE`` into its own ``tmp_path``, so the trace
directory is that directory and the user's real traces are never read.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from corral._cli import main

from ..tracing.test_records import T0, action, message, write_trace


@pytest.fixture
def trace_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private trace directory, and a terminal wide enough that rich never wraps."""
    monkeypatch.setenv("CORRAL_TRACE_FILE", str(tmp_path / "trace-current.log"))
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("NO_COLOR", "1")
    return tmp_path


def run(*args: str) -> Result:
    return CliRunner().invoke(main, ["trace", *args])


def nursery_records() -> list[dict[str, Any]]:
    """A subtask whose nursery ran three subprocesses: one exited, one failed, one still runs.

    A fourth action's parent is not in the file, and a message sits among the actions.
    """
    return [
        action("enter", "t1", "Subtask", "sample 1", start=T0),
        action("enter", "c1", detail="python -c ok", parent_id="t1", start=T0 + 1),
        action("enter", "c2", detail="sleep 300", parent_id="t1", start=T0 + 1),
        action("enter", "c3", detail="false", parent_id="t1", start=T0 + 1),
        message("[Sandbox] exec started"),
        action("exit", "c1", detail="python -c ok", parent_id="t1", start=T0 + 1, duration=0.5),
        action(
            "error",
            "c3",
            detail="false",
            parent_id="t1",
            start=T0 + 1,
            duration=0.75,
            error="exit status 1",
            error_type="CalledProcessError",
        ),
        action("enter", "o1", "Sandbox", "read_file /etc/hosts", parent_id="gone", start=T0 + 2),
        action("exit", "o1", "Sandbox", "read_file /etc/hosts", parent_id="gone", duration=0.125),
    ]


def anomaly_records() -> list[dict[str, Any]]:
    """One action of each kind: running, cancelled, error, timeout, and a clean exit."""
    now = time.time()
    return [
        action("enter", "run", detail="sleep 300", start=now - 60),
        action("enter", "can", detail="sleep 5", start=T0),
        action("cancel", "can", detail="sleep 5", start=T0, duration=3.0),
        action("enter", "err", detail="false", start=T0),
        action(
            "error",
            "err",
            detail="false",
            start=None,  # the reader copies it from the enter record
            duration=0.5,
            error="boom",
            error_type="OSError",
        ),
        action("enter", "tmo", detail="sleep 10", start=T0),
        action("timeout", "tmo", detail="sleep 10", start=T0, duration=2.0),
        action("enter", "ok", detail="true", start=T0),
        action("exit", "ok", detail="true", start=T0, duration=0.01),
    ]


# -- list -------------------------------------------------------------------------------


def test_list_newest_first(trace_dir: Path) -> None:
    old = write_trace(trace_dir / "trace-100.log.gz", [message("old")])
    new = write_trace(trace_dir / "trace-200.log", [message("new")])
    os.utime(old, (T0, T0))
    os.utime(new, (T0 + 60, T0 + 60))
    result = run("list")
    assert result.exit_code == 0, result.output
    assert "Time" in result.stdout
    assert "Trace File" in result.stdout
    assert result.stdout.index(str(new)) < result.stdout.index(str(old))


def test_list_json(trace_dir: Path) -> None:
    old = write_trace(trace_dir / "trace-100.log.gz", [message("old")])
    new = write_trace(trace_dir / "trace-200.log", [message("new")])
    os.utime(old, (T0, T0))
    os.utime(new, (T0 + 60, T0 + 60))
    result = run("list", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [
        {"file": str(new), "mtime": T0 + 60},
        {"file": str(old), "mtime": T0},
    ]


def test_list_includes_the_configured_file_whatever_its_name(
    trace_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = write_trace(trace_dir / "my-run.jsonl", [message("mine")])
    monkeypatch.setenv("CORRAL_TRACE_FILE", str(mine))
    result = run("list", "--json")
    assert [row["file"] for row in json.loads(result.stdout)] == [str(mine)]


def test_list_without_files(trace_dir: Path) -> None:
    result = run("list")
    assert result.exit_code == 0
    assert result.stdout == f"No trace files in {trace_dir}.\n"
    assert json.loads(run("list", "--json").stdout) == []


# -- dump -------------------------------------------------------------------------------


def test_dump_newest_by_default(trace_dir: Path) -> None:
    old = write_trace(trace_dir / "trace-1.log", [message("old")])
    os.utime(old, (T0, T0))
    write_trace(trace_dir / "trace-2.log", [action("enter", "a1", sample=3), message("hi")])
    result = run("dump")
    assert result.exit_code == 0, result.output
    dumped = json.loads(result.stdout)
    assert [record["message"] for record in dumped] == ["Subprocess: sleep 1 (enter)", "hi"]
    assert dumped[0]["sample"] == 3  # extras are kept
    assert dumped[0]["parent_id"] is None  # what the file says is kept
    assert "duration" not in dumped[0]  # what it does not say is not invented
    assert result.stdout.startswith('[\n  {\n    "timestamp"')  # indent 2
    assert list(dumped[0])[:7] == [
        "timestamp",
        "level",
        "message",
        "action",
        "detail",
        "event",
        "trace_id",
    ]


def test_dump_filter_is_a_case_insensitive_substring_of_the_message(trace_dir: Path) -> None:
    write_trace(trace_dir / "trace-1.log", nursery_records())
    result = run("dump", "trace-1.log", "--filter", "SLEEP")
    assert result.exit_code == 0, result.output
    dumped = json.loads(result.stdout)
    assert [(r["trace_id"], r["event"]) for r in dumped] == [("c2", "enter")]


def test_dump_a_file_in_the_current_directory(
    trace_dir: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path_factory.mktemp("cwd")
    write_trace(elsewhere / "copied.log", [message("from cwd")])
    monkeypatch.chdir(elsewhere)
    result = run("dump", "copied.log")
    assert result.exit_code == 0, result.output
    assert [r["message"] for r in json.loads(result.stdout)] == ["from cwd"]


def test_dump_falls_back_to_the_gzipped_file(trace_dir: Path) -> None:
    """A process that exits between ``list`` and ``dump`` has gzipped its file."""
    write_trace(trace_dir / "trace-7.log.gz", [message("zipped")])
    result = run("dump", "trace-7.log")
    assert result.exit_code == 0, result.output
    assert [r["message"] for r in json.loads(result.stdout)] == ["zipped"]


def test_dump_notes_skipped_records_on_stderr(trace_dir: Path) -> None:
    bad = message("bad")
    del bad["level"]
    path = write_trace(
        trace_dir / "trace-1.log", [message("good"), bad], tail='{"timestamp": "2025'
    )
    result = run("dump")
    assert result.exit_code == 0, result.output
    assert [r["message"] for r in json.loads(result.stdout)] == ["good"]
    assert result.stderr == (
        f"note: skipped 2 trace record(s) in {path} that could not be read: "
        "line 2: level: Field required\n"
    )


def test_missing_file_is_one_line_and_exit_code_1(trace_dir: Path) -> None:
    write_trace(trace_dir / "trace-1.log", [message("present")])
    for command in ("dump", "anomalies", "tree"):
        result = run(command, "trace-404.log")
        assert result.exit_code == 1
        assert result.stdout == ""
        assert result.stderr.count("\n") == 1
        assert "'trace-404.log' does not exist" in result.stderr
        assert "Traceback" not in result.stderr


def test_missing_absolute_path(trace_dir: Path) -> None:
    missing = trace_dir / "elsewhere" / "trace-1.log"
    result = run("dump", str(missing))
    assert result.exit_code == 1
    assert result.stderr == f"Error: The trace file '{missing}' does not exist.\n"


def test_no_trace_files_is_one_line_and_exit_code_1(trace_dir: Path) -> None:
    for command in ("dump", "anomalies", "tree"):
        result = run(command)
        assert result.exit_code == 1
        assert result.stderr == f"Error: No trace files in {trace_dir}.\n"


@pytest.mark.parametrize("name", ["trace-1.log", "/", "."])
def test_a_directory_is_not_a_trace_file(trace_dir: Path, name: str) -> None:
    (trace_dir / "trace-1.log").mkdir()
    result = run("dump", name)
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: Cannot read the trace file")
    assert result.stderr.count("\n") == 1


def test_an_unreadable_trace_directory_is_one_line(
    trace_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(directory: Path) -> list[object]:
        raise PermissionError(13, "Permission denied", str(directory))

    monkeypatch.setattr("corral._cli._trace.list_trace_files", refuse)
    result = run("list")
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: Cannot read the trace directory '{trace_dir}': Permission denied.\n"
    )


# -- anomalies --------------------------------------------------------------------------


def test_anomalies_shows_running_and_cancelled(trace_dir: Path) -> None:
    write_trace(trace_dir / "trace-1.log", anomaly_records())
    result = run("anomalies")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith(f"TRACE: {trace_dir / 'trace-1.log'}\n")
    assert "Running Actions" in out
    assert "Cancelled Actions" in out
    assert "sleep 300" in out
    assert "sleep 5" in out
    assert "3.00s" in out
    for hidden in ("Error Actions", "Timeout Actions", "sleep 10", "boom"):
        assert hidden not in out
    assert "true" not in out  # exited cleanly: not an anomaly


def test_anomalies_all_adds_errors_and_timeouts(trace_dir: Path) -> None:
    write_trace(trace_dir / "trace-1.log", anomaly_records())
    result = run("anomalies", "--all")
    assert result.exit_code == 0, result.output
    out = result.stdout
    for title in ("Running Actions", "Cancelled Actions", "Error Actions", "Timeout Actions"):
        assert title in out
    assert "OSError: boom" in out
    assert "2.00s" in out  # the timeout
    assert out.index("Running Actions") < out.index("Cancelled Actions")
    assert out.index("Error Actions") < out.index("Timeout Actions")


def test_anomalies_json(trace_dir: Path) -> None:
    records = anomaly_records()
    path = write_trace(trace_dir / "trace-1.log", records)
    last_write = records[0]["start_time"] + 90
    os.utime(path, (last_write, last_write))
    result = run("anomalies", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report) == {
        "trace_file",
        "as_of",
        "writer",
        "running",
        "cancelled",
        "errors",
        "timeouts",
    }
    assert report["trace_file"] == str(path)
    # No process holds the file: its writer is gone, and it ran until the last write.
    assert report["writer"]["state"] == "stopped"
    assert report["writer"]["pids"] == []
    assert datetime.fromisoformat(report["writer"]["last_write"]).timestamp() == pytest.approx(
        last_write
    )
    (running,) = report["running"]
    assert (running["action"], running["detail"], running["trace_id"]) == (
        "Subprocess",
        "sleep 300",
        "run",
    )
    assert running["duration"] == pytest.approx(90)
    assert (running["task"], running["sample_id"], running["span_id"]) == (None, None, None)
    (cancelled,) = report["cancelled"]
    assert (cancelled["detail"], cancelled["start_time"], cancelled["duration"]) == (
        "sleep 5",
        T0,
        3.0,
    )
    # Errors and timeouts are in the JSON even without --all.
    (error,) = report["errors"]
    assert (error["error"], error["error_type"]) == ("boom", "OSError")
    assert error["start_time"] == T0  # copied from the enter record
    assert [t["trace_id"] for t in report["timeouts"]] == ["tmo"]


def test_anomalies_lists_the_latest_finish_first_and_the_oldest_running_first(
    trace_dir: Path,
) -> None:
    now = time.time()
    records = [
        action("enter", "run-new", start=now - 10),
        action("enter", "run-old", start=now - 100),
        action("enter", "early", start=T0),
        action("cancel", "early", start=T0, duration=1.0),
        action("enter", "late", start=T0 + 50),
        action("cancel", "late", start=T0 + 50, duration=1.0),
        action("enter", "long", start=T0),
        action("cancel", "long", start=T0, duration=30.0),
    ]
    write_trace(trace_dir / "trace-1.log", records)
    report = json.loads(run("anomalies", "--json").stdout)
    assert [r["trace_id"] for r in report["running"]] == ["run-old", "run-new"]
    assert [r["trace_id"] for r in report["cancelled"]] == ["late", "long", "early"]


def test_anomalies_json_has_all_keys_when_empty(trace_dir: Path) -> None:
    write_trace(trace_dir / "trace-1.log", [action("enter", "ok"), action("exit", "ok")])
    report = json.loads(run("anomalies", "--json").stdout)
    assert {k: report[k] for k in ("running", "cancelled", "errors", "timeouts")} == {
        "running": [],
        "cancelled": [],
        "errors": [],
        "timeouts": [],
    }


def test_anomalies_when_there_are_none(trace_dir: Path) -> None:
    records = [action("enter", "ok"), action("exit", "ok", duration=0.1)]
    records += [action("enter", "err"), action("error", "err", error="x", error_type="E")]
    write_trace(trace_dir / "trace-1.log", records)
    result = run("anomalies")
    assert result.exit_code == 0, result.output
    assert "No running or cancelled actions found" in result.stdout
    assert "--all" in result.stdout
    assert "Error Actions" in run("anomalies", "--all").stdout
    write_trace(trace_dir / "trace-1.log", records[:2])
    assert "No anomalies found" in run("anomalies", "--all").stdout


def test_anomalies_filter(trace_dir: Path) -> None:
    write_trace(trace_dir / "trace-1.log", anomaly_records())
    report = json.loads(run("anomalies", "--json", "--filter", "SLEEP 5").stdout)
    assert [r["trace_id"] for r in report["cancelled"]] == ["can"]
    assert report["running"] == []


def test_anomalies_skips_an_unknown_event_with_a_note(trace_dir: Path) -> None:
    records = [*anomaly_records(), action("suspend", "run"), action("suspend", "can")]
    write_trace(trace_dir / "trace-1.log", records)
    result = run("anomalies", "--json")
    assert result.exit_code == 0, result.output
    assert result.stderr == "note: skipped 2 action record(s) with an unknown event: 'suspend'\n"
    assert [r["trace_id"] for r in json.loads(result.stdout)["running"]] == ["run"]


# -- tree -------------------------------------------------------------------------------


def test_tree_of_a_nursery_with_three_children(trace_dir: Path) -> None:
    path = write_trace(trace_dir / "trace-1.log", nursery_records())
    result = run("tree")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"TRACE: {path}"

    def line_of(text: str) -> str:
        (found,) = [line for line in lines if text in line]
        return found

    def depth(text: str) -> int:
        line = line_of(text)
        return len(line) - len(line.lstrip("│├└─ "))

    subtask = line_of("Subtask: sample 1")
    assert "running for" in subtask  # never exited
    assert depth("Subtask: sample 1") < depth("Subprocess: python -c ok")
    for child in ("python -c ok", "sleep 300", "false"):
        assert depth(f"Subprocess: {child}") == depth("Subprocess: python -c ok")
    # The children are listed under the subtask in the order they started.
    assert lines.index(subtask) < lines.index(line_of("python -c ok"))
    assert lines.index(line_of("python -c ok")) < lines.index(line_of("sleep 300"))
    assert lines.index(line_of("sleep 300")) < lines.index(line_of("Subprocess: false"))
    assert line_of("python -c ok").endswith("0.50s")
    assert "running for" in line_of("sleep 300")
    assert "error after 0.75s: CalledProcessError: exit status 1" in line_of("Subprocess: false")
    # The orphan is a root, like the subtask, and says why.
    orphan = line_of("Sandbox: read_file /etc/hosts")
    assert depth("Sandbox: read_file") == depth("Subtask: sample 1")
    assert "0.12s" in orphan
    assert "parent gone is not in this file" in orphan
    assert "[Sandbox] exec started" not in result.stdout  # messages are not actions


def test_tree_marks_cancel_and_timeout(trace_dir: Path) -> None:
    write_trace(trace_dir / "trace-1.log", anomaly_records())
    out = run("tree").stdout
    assert "sleep 5  cancelled after 3.00s" in out
    assert "sleep 10  timed out after 2.00s" in out
    assert "true  0.01s" in out


def test_short_durations_are_shown_in_milliseconds_and_microseconds(trace_dir: Path) -> None:
    records = [
        action("enter", "q", detail="quick"),
        action("exit", "q", detail="quick", duration=0.0042),
        action("enter", "u", detail="instant"),
        action("exit", "u", detail="instant", duration=0.00025),
    ]
    write_trace(trace_dir / "trace-1.log", records)
    out = run("tree").stdout
    assert "quick  4.2ms" in out
    assert "instant  250µs" in out


def test_tree_keeps_each_action_on_one_line(trace_dir: Path) -> None:
    detail = "sh -c 'echo a\necho b'"
    records = [action("enter", "m", detail=detail), action("exit", "m", detail=detail)]
    write_trace(trace_dir / "trace-1.log", records)
    lines = run("tree").stdout.splitlines()
    assert lines[1] == "└── Subprocess: sh -c 'echo a\\necho b'  ?"


def test_long_durations_are_shown_in_hours_and_days(trace_dir: Path) -> None:
    now = time.time()
    records = [
        action("enter", "h", detail="stuck for hours", start=now - 2 * 3600 - 65),
        action("enter", "d", detail="finished after days", start=T0),
        action("exit", "d", detail="finished after days", duration=3 * 86400 + 3600 + 120),
        action("enter", "m", detail="finished after minutes", start=T0),
        action("exit", "m", detail="finished after minutes", duration=125.5),
    ]
    write_trace(trace_dir / "trace-1.log", records)
    out = run("tree").stdout
    assert "stuck for hours  running for 2h 01m 0" in out
    assert "finished after days  3d 01h 02m" in out
    assert "finished after minutes  2m 05s" in out
    assert "2h 01m 0" in run("anomalies").stdout


def test_tree_filter_keeps_the_ancestors_of_matches(trace_dir: Path) -> None:
    write_trace(trace_dir / "trace-1.log", nursery_records())
    result = run("tree", "--filter", "SLEEP 300")
    assert result.exit_code == 0, result.output
    assert "Subtask: sample 1" in result.stdout
    assert "Subprocess: sleep 300" in result.stdout
    for other in ("python -c ok", "Subprocess: false", "read_file"):
        assert other not in result.stdout
    assert "No actions match." in run("tree", "--filter", "nothing like it").stdout


def test_tree_of_a_file_without_actions(trace_dir: Path) -> None:
    write_trace(trace_dir / "trace-1.log", [message("only a message")])
    result = run("tree")
    assert result.exit_code == 0
    assert "No actions found in trace file." in result.stdout


def test_tree_survives_a_parent_cycle(trace_dir: Path) -> None:
    """Corrupt parent ids that point at each other must not hang or hide the actions."""
    records = [
        action("enter", "x", detail="first", parent_id="y"),
        action("enter", "y", detail="second", parent_id="x"),
    ]
    write_trace(trace_dir / "trace-1.log", records)
    result = run("tree")
    assert result.exit_code == 0, result.output
    assert "first" in result.stdout
    assert "second" in result.stdout


# -- the real command -------------------------------------------------------------------


def test_real_corral_process_dumps_a_gzipped_file(tmp_path: Path) -> None:
    """``corral trace`` is wired into the installed command and reads what it is given."""
    path = write_trace(tmp_path / "trace-1.log.gz", nursery_records(), tail='{"trunc')
    env = {**os.environ, "CORRAL_TRACE_FILE": str(tmp_path / "trace-current.log")}
    done = subprocess.run(
        [sys.executable, "-m", "corral", "trace", "dump", str(path), "--filter", "subtask"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert [r["trace_id"] for r in json.loads(done.stdout)] == ["t1"]
    assert "note: skipped 1 trace record(s)" in done.stderr
    # Reading traces must not leave a trace file of its own behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trace-1.log.gz"]


WRITER = """
import logging, anyio
from corral.util import trace_action

log = logging.getLogger("corral.test")

async def child(seconds):
    with trace_action(log, "Subprocess", "sleep %s", seconds):
        await anyio.sleep(seconds)

async def main():
    with trace_action(log, "Subtask", "sample %d", 1):
        async with anyio.create_task_group() as tg:
            for seconds in (0.03, 0.01, 0.02):
                tg.start_soon(child, seconds)

anyio.run(main, backend="trio")
"""


def test_tree_of_a_file_the_real_writer_wrote(tmp_path: Path) -> None:
    """The reader and the writer agree: a nursery's three children sit under its action."""
    env = {**os.environ, "CORRAL_TRACE_FILE": str(tmp_path / "trace-writer.log")}
    wrote = subprocess.run(
        [sys.executable, "-c", WRITER],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert wrote.returncode == 0, wrote.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trace-writer.log.gz"]
    done = subprocess.run(
        [sys.executable, "-m", "corral", "trace", "tree"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**env, "NO_COLOR": "1", "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert lines[0] == f"TRACE: {tmp_path / 'trace-writer.log.gz'}"
    assert lines[1].startswith("└── Subtask: sample 1  ")
    children = lines[2:]
    assert len(children) == 3
    assert all(line.startswith(("    ├── ", "    └── ")) for line in children)
    assert sorted(line[8:].split("  ")[0] for line in children) == [
        "Subprocess: sleep 0.01",
        "Subprocess: sleep 0.02",
        "Subprocess: sleep 0.03",
    ]


def test_real_corral_process_reports_a_missing_file(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("corral")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "corral"]
    env = {**os.environ, "CORRAL_TRACE_FILE": str(tmp_path / "trace-current.log")}
    done = subprocess.run(
        [*command, "trace", "anomalies", "trace-404.log"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"Error: The trace file 'trace-404.log' does not exist "
        f"(looked in {tmp_path} and the current directory)."
    ]
