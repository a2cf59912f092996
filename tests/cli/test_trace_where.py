"""``corral trace``: actions under their task and sample, ``running``, and files with no record.

The files are written by hand (see ``tests/tracing/test_records.py``), with the
``task``, ``sample_id`` and ``span_id`` fields the writer adds to every record.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from ..tracing.test_records import T0, action, message, write_trace
from .test_trace import run, trace_dir

__all__ = ["trace_dir"]  # the fixture, shared


def where(task: str | None, sample: int | str | None, span: str | None) -> dict[str, Any]:
    return {"task": task, "sample_id": sample, "span_id": span}


def solve_records() -> list[dict[str, Any]]:
    """Task "grade": a task-level setup, then two samples, each with two identical subtasks.

    Sample 2's second subtask still runs a ``sleep 300``; an action outside any
    task comes last.
    """
    records: list[dict[str, Any]] = [
        action("enter", "setup", "Sandbox", "task_init", **where("grade", None, None)),
        action("exit", "setup", "Sandbox", "task_init", duration=0.5, **where("grade", None, None)),
    ]
    for sample in (1, 2):
        for n in (1, 2):
            sub, proc, span = f"s{sample}-{n}", f"p{sample}-{n}", f"span-{sample}-{n}"
            records.append(
                action("enter", sub, "Subtask", "solve", start=T0, **where("grade", sample, "top"))
            )
            cmd = "sleep 300" if (sample, n) == (2, 2) else "true"
            records.append(
                action(
                    "enter",
                    proc,
                    detail=cmd,
                    parent_id=sub,
                    start=T0,
                    **where("grade", sample, span),
                )
            )
            if (sample, n) != (2, 2):
                records.append(
                    action(
                        "exit",
                        proc,
                        detail=cmd,
                        parent_id=sub,
                        duration=0.25,
                        **where("grade", sample, span),
                    )
                )
                records.append(
                    action(
                        "exit",
                        sub,
                        "Subtask",
                        "solve",
                        duration=0.5,
                        **where("grade", sample, "top"),
                    )
                )
    records.append(message("[Note] between", **where("grade", 1, "top")))
    records.append(action("enter", "loose", detail="echo outside", **where(None, None, None)))
    records.append(action("exit", "loose", detail="echo outside", duration=0.1))
    return records


def lines_of(text: str) -> list[str]:
    return text.splitlines()


def depth(line: str) -> int:
    return (len(line) - len(line.lstrip("│├└─ "))) // 4 - 1


# -- tree -------------------------------------------------------------------------------


def test_tree_nests_actions_under_task_and_sample(trace_dir: Path) -> None:
    path = write_trace(trace_dir / "trace-1.log", solve_records())
    result = run("tree")
    assert result.exit_code == 0, result.output
    lines = lines_of(result.stdout)
    assert lines[0] == f"TRACE: {path}"
    shown = [(depth(line), line.lstrip("│├└─ ").split("  ")[0]) for line in lines[1:]]
    assert shown == [
        (0, "task grade"),
        (1, "Sandbox: task_init"),
        (1, "sample 1"),
        (2, "Subtask: solve"),
        (3, "Subprocess: true"),
        (2, "Subtask: solve"),
        (3, "Subprocess: true"),
        (1, "sample 2"),
        (2, "Subtask: solve"),
        (3, "Subprocess: true"),
        (2, "Subtask: solve"),
        (3, "Subprocess: sleep 300"),
        (0, "Subprocess: echo outside"),
    ]
    assert "running for" in lines[-2]
    assert "running for" in lines[-3]  # the subtask around it


def test_tree_filter_keeps_the_task_and_sample_of_matches(trace_dir: Path) -> None:
    write_trace(trace_dir / "trace-1.log", solve_records())
    result = run("tree", "--filter", "sleep 300")
    assert result.exit_code == 0, result.output
    shown = [line.lstrip("│├└─ ").split("  ")[0] for line in lines_of(result.stdout)[1:]]
    assert shown == ["task grade", "sample 2", "Subtask: solve", "Subprocess: sleep 300"]


def test_tree_json(trace_dir: Path) -> None:
    path = write_trace(trace_dir / "trace-1.log", solve_records())
    result = run("tree", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report) == {"trace_file", "as_of", "writer", "groups", "actions"}
    assert report["trace_file"] == str(path)
    assert [(g["task"], g["sample_id"], g["roots"]) for g in report["groups"]] == [
        ("grade", None, ["setup"]),
        ("grade", 1, ["s1-1", "s1-2"]),
        ("grade", 2, ["s2-1", "s2-2"]),
        (None, None, ["loose"]),
    ]
    actions = {a["trace_id"]: a for a in report["actions"]}
    assert [a["trace_id"] for a in report["actions"]] == [
        "setup",
        "s1-1",
        "p1-1",
        "s1-2",
        "p1-2",
        "s2-1",
        "p2-1",
        "s2-2",
        "p2-2",
        "loose",
    ]
    assert actions["s2-2"] == {
        "trace_id": "s2-2",
        "parent_id": None,
        "action": "Subtask",
        "detail": "solve",
        "status": "running",
        "start_time": T0,
        "duration": actions["s2-2"]["duration"],
        "depth": 0,
        "children": ["p2-2"],
        "task": "grade",
        "sample_id": 2,
        "span_id": "top",
    }
    assert actions["p1-1"]["status"] == "exit"
    assert actions["p1-1"]["duration"] == 0.25
    assert (actions["p1-1"]["depth"], actions["p1-1"]["span_id"]) == (1, "span-1-1")
    # Identical subtasks are told apart by their sample and by the spans inside them.
    assert {actions[p]["span_id"] for p in ("p1-1", "p1-2", "p2-1", "p2-2")} == {
        "span-1-1",
        "span-1-2",
        "span-2-1",
        "span-2-2",
    }


def test_an_action_whose_parent_ran_elsewhere_is_a_root_of_its_sample(trace_dir: Path) -> None:
    records = [
        action("enter", "outer", "Run", "all samples", **where("t", None, None)),
        action("enter", "inner", detail="in sample", parent_id="outer", **where("t", 5, "x")),
    ]
    write_trace(trace_dir / "trace-1.log", records)
    report = json.loads(run("tree", "--json").stdout)
    assert [(g["sample_id"], g["roots"]) for g in report["groups"]] == [
        (None, ["outer"]),
        (5, ["inner"]),
    ]
    assert report["actions"][0]["children"] == []
    text = run("tree").stdout
    assert "is not in this file" not in text  # its parent is, in the task's group


# -- anomalies and running ----------------------------------------------------------------


def test_anomalies_name_the_sample_of_each_action(trace_dir: Path) -> None:
    now = time.time()
    records = [
        action("enter", "a", detail="sleep 30", start=now - 5, **where("grade", 1, "x")),
        action("enter", "b", detail="sleep 31", start=now - 50, **where("grade", "s-2", "y")),
        action("enter", "c", detail="sleep 32", start=now - 20, **where(None, None, None)),
        action("enter", "d", detail="false", start=T0, **where("grade", 3, "z")),
        action("error", "d", detail="false", duration=1.0, error="no", **where("grade", 3, "z")),
    ]
    path = write_trace(trace_dir / "trace-1.log", records)
    os.utime(path, (now, now))
    report = json.loads(run("anomalies", "--json").stdout)
    assert [(r["trace_id"], r["task"], r["sample_id"]) for r in report["running"]] == [
        ("b", "grade", "s-2"),  # the longest-running first
        ("c", None, None),
        ("a", "grade", 1),
    ]
    assert [(r["trace_id"], r["sample_id"], r["span_id"]) for r in report["errors"]] == [
        ("d", 3, "z")
    ]
    result = run("anomalies", "--all")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Task / Sample" in out
    rows = [line for line in lines_of(out) if "sleep 3" in line]
    assert ["grade / sample s-2" in rows[0], "grade / sample 1" in rows[2]] == [True, True]
    assert "sleep 31" in rows[0]
    assert "sleep 32" in rows[1]
    assert "grade / sample 3" in out


def test_running_shows_only_running_actions(trace_dir: Path) -> None:
    now = time.time()
    records = [
        action("enter", "a", detail="sleep 30", start=now - 5, **where("grade", 1, "x")),
        action("enter", "can", detail="sleep 5", start=T0, **where("grade", 2, "x")),
        action("cancel", "can", detail="sleep 5", duration=3.0, **where("grade", 2, "x")),
    ]
    write_trace(trace_dir / "trace-1.log", records)
    result = run("running")
    assert result.exit_code == 0, result.output
    assert "Running Actions" in result.stdout
    assert "grade / sample 1" in result.stdout
    assert "Cancelled" not in result.stdout
    assert "No process is writing it any more" in result.stdout
    report = json.loads(run("running", "--json").stdout)
    assert set(report) == {"trace_file", "as_of", "writer", "running"}
    assert [r["trace_id"] for r in report["running"]] == ["a"]
    write_trace(trace_dir / "trace-1.log", records[1:])
    assert "No running actions found in trace file." in run("running").stdout


def test_a_compressed_file_says_its_process_exited(trace_dir: Path) -> None:
    write_trace(trace_dir / "trace-1.log.gz", [action("enter", "a", detail="sleep 30")])
    report = json.loads(run("running", "--json").stdout)
    assert report["writer"]["state"] == "exited"
    assert "Its process has exited" in run("running").stdout


# -- files with no trace record -----------------------------------------------------------

COMMANDS = [["dump"], ["dump", "--json"], ["anomalies"], ["anomalies", "--json"], ["tree"]]
COMMANDS += [["tree", "--json"], ["running"], ["running", "--json"]]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_file_that_is_not_a_trace_is_one_line_and_exit_code_1(
    trace_dir: Path, command: list[str]
) -> None:
    """``corral trace dump /etc/passwd`` used to print ``[]`` and succeed."""
    passwd = trace_dir / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/usr/sbin:/bin/sh\n")
    result = run(*command, str(passwd))
    assert result.exit_code == 1
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"Error: '{passwd}' is not a trace file with records: ")
    assert "none of its lines is a trace record (2 could not be read; first: line 1:" in line


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_an_empty_file_is_one_line_and_exit_code_1(trace_dir: Path, command: list[str]) -> None:
    empty = trace_dir / "trace-empty.log"
    empty.write_text("\n")
    result = run(*command, str(empty))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"Error: '{empty}' is not a trace file with records: it holds no records yet."
    ]


def test_etc_passwd_itself(trace_dir: Path) -> None:
    result = run("dump", "/etc/passwd")
    assert result.exit_code == 1
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    "args",
    [["dump", "a", "b"], ["anomalies", "--no-such-option"], ["running", "--all"], ["tree", "-x"]],
    ids=" ".join,
)
def test_usage_errors_exit_2(trace_dir: Path, args: list[str]) -> None:
    write_trace(trace_dir / "a", [message("m")])
    result = run(*args)
    assert result.exit_code == 2
    assert result.stdout == ""
    # One line, as every corral usage error: what is wrong, and where the help is.
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("Error: ")
    assert "--help" in result.stderr


def test_hostile_task_and_sample_names_are_made_visible(trace_dir: Path) -> None:
    records = [
        action("enter", "a", detail="sleep 30", **where("t\x1b[31m", "s\u202e1", "x")),
    ]
    write_trace(trace_dir / "trace-1.log", records)
    for command in (["tree"], ["anomalies"], ["running"]):
        out = run(*command).stdout
        assert "\x1b" not in out
        assert "\u202e" not in out
        assert "t\\x1b[31m" in out
        assert "s\\u202e1" in out
    report = run("tree", "--json").stdout
    assert "\u202e" not in report
    assert json.loads(report)["groups"][1]["sample_id"] == "s\u202e1"
