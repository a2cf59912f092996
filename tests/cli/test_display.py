"""What ``corral demo`` shows: the live view, the plain lines and the summary, at fixed widths."""

from __future__ import annotations

import contextvars
import io
import logging
import os
import re
from pathlib import Path

import anyio
import pytest
from rich.console import Console

import corral
from corral._cli._demo import DemoConfig, _locations, _recorded_sandboxes, _Report, _summary
from corral._cli._demo_display import (
    MAX_RUNNING_ROWS,
    SAMPLE_ID,
    ActionTracker,
    LiveView,
    PlainView,
)
from corral.tracing import init as init_tracing
from corral.tracing._actions import trace_action
from corral.util import sandbox

WIDTHS = [80, 120]

logger = logging.getLogger("corral.tests.display")


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def render(renderable: object, width: int) -> list[str]:
    """*renderable* as a terminal of *width* columns shows it, without styles."""
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None, legacy_windows=False).print(renderable)
    return buffer.getvalue().splitlines()


def test_the_tracker_follows_the_innermost_open_action_of_each_sample() -> None:
    init_tracing()
    clock = Clock()
    tracker = ActionTracker(clock)
    with tracker.attached():
        outer = contextvars.copy_context()
        outer.run(SAMPLE_ID.set, 7)
        exec_ = trace_action(logger, "Sandbox", "%s %s", "exec", "sleep 30")
        outer.run(exec_.__enter__)
        clock.now += 1
        process = trace_action(logger, "Subprocess", "%s", "sleep 30")
        outer.run(process.__enter__)
        assert tracker.current(7) == ("Subprocess: sleep 30", 1001.0)
        outer.run(process.__exit__, None, None, None)
        assert tracker.current(7) == ("Sandbox: exec sleep 30", 1000.0)
        # Code that is no sample's (the runtime's own tasks) is not followed.
        with trace_action(logger, "Subprocess", "%s", "someone else's"):
            assert tracker.current(7) == ("Sandbox: exec sleep 30", 1000.0)
        outer.run(exec_.__exit__, None, None, None)
        assert tracker.current(7) is None
    assert tracker not in logging.getLogger("corral").handlers


@pytest.mark.anyio
async def test_the_tracker_sees_a_real_sandbox_exec(tmp_path: Path) -> None:
    init_tracing()
    entered = anyio.Event()

    class Watching(ActionTracker):
        def emit(self, record: logging.LogRecord) -> None:
            super().emit(record)
            if (
                getattr(record, "action", None) == "Subprocess"
                and record.__dict__["event"] == "enter"
            ):
                entered.set()

    tracker = Watching()
    with tracker.attached():
        async with corral.task("display", sandbox="local") as task:

            async def sample() -> None:
                SAMPLE_ID.set(1)
                async with task.sample(1):
                    await sandbox().exec(["sleep", "30"])

            async with anyio.create_task_group() as group:
                group.start_soon(sample)
                await entered.wait()
                current = tracker.current(1)
                assert current is not None
                assert current[0].startswith("Subprocess: "), current
                assert "sleep 30" in current[0]
                group.cancel_scope.cancel("the test saw the action")
    assert tracker.current(1) is None  # the cancelled actions were left


def _busy_view(clock: Clock) -> LiveView:
    """A view in the middle of a run: 3 of 10 done, 10 running, errors, limits."""
    init_tracing()
    tracker = ActionTracker(clock)
    view = LiveView("demo (trio)", 10, tracker, clock=clock)
    with tracker.attached():
        for id in range(1, 11):
            view.started(id, 30.0 if id == 4 else None)
        clock.now += 1.5
        context = contextvars.copy_context()
        context.run(SAMPLE_ID.set, 1)
        long_command = "sh -c " + "x" * 200
        context.run(trace_action(logger, "Sandbox", "%s", f"exec {long_command}").__enter__)
        context = contextvars.copy_context()
        context.run(SAMPLE_ID.set, 2)
        context.run(trace_action(logger, "Subprocess", "%s", "sleep 30").__enter__)
    clock.now += 2.0
    view.finished(8, "ok", None, expected=True)
    view.finished(9, "time limit", "sample 9 exceeded its time limit\nsecond line", expected=True)
    view.finished(10, "failed", "AssertionError: check 'sum' failed: " + "y" * 200, expected=False)
    view.set_limits({"sandboxes/local": (7, 8), "subprocesses": (2, 2)})
    return view


@pytest.mark.parametrize("width", WIDTHS)
def test_the_live_view_shows_progress_running_samples_limits_and_errors(width: int) -> None:
    clock = Clock()
    lines = render(_busy_view(clock), width)
    text = "\n".join(lines)
    assert all(len(line) <= width for line in lines), text
    progress = lines[0]
    assert progress.startswith("demo (trio)")
    assert re.search(r"\b3/10\b", progress), progress
    assert "30%" in progress
    assert "samples/s" in progress
    assert "ETA" in progress
    assert "running: 7" in text
    row = r"^\s+(\d+)\s+(.*?)\s+\d+\.\ds(?:\s+[\d.]+/\d+s)?\s*$"
    rows = {int(m[1]): m[2] for m in re.finditer(row, text, re.M)}
    assert rows[2].startswith("Subprocess: sleep 30")
    assert rows[1].startswith("Sandbox: exec sh -c xxx")
    assert rows[3] == "running"
    assert re.search(r"^\s+2\s+Subprocess: sleep 30\s+2\.0s\s*$", text, re.M), text
    assert re.search(r"^\s+3\s+running\s+3\.5s\s*$", text, re.M), text
    # A sample with a time limit shows its own time against it.
    assert re.search(r"^\s+4\s+running\s+3\.5s\s+3\.5/30s\s*$", text, re.M), text
    assert len(rows) == min(7, MAX_RUNNING_ROWS)
    assert "limits:  sandboxes/local 7/8  subprocesses 2/2" in text
    assert "errors: 2" in text
    assert "sample 9 (as designed): sample 9 exceeded its time limit" in text
    assert "second line" not in text
    assert "sample 10: AssertionError: check 'sum' failed" in text


def test_the_live_view_lists_at_most_so_many_running_samples() -> None:
    clock = Clock()
    view = LiveView("demo (asyncio)", 40, clock=clock)
    for id in range(1, 21):
        view.started(id)
    text = "\n".join(render(view, 80))
    assert "running: 20" in text
    assert f"... and {20 - MAX_RUNNING_ROWS} more" in text
    assert "limits:  none in use" in text
    assert "errors" not in text


def test_plain_prints_one_line_per_finished_sample() -> None:
    buffer = io.StringIO()
    clock = Clock()
    view = PlainView(Console(file=buffer, width=80, color_system=None), 3, clock)
    for id in (1, 2, 3):
        view.started(id)
    clock.now += 0.25
    view.finished(2, "ok", None, expected=True)
    view.finished(3, "timed out", "SandboxTimeoutError: Command timed out\nmore", expected=True)
    view.finished(1, "failed", "ValueError: " + "z" * 100, expected=False)
    lines = buffer.getvalue().splitlines()
    assert lines == [
        "sample 2: ok in 0.25 s (1/3)",
        "sample 3: timed out (as designed) in 0.25 s (2/3): SandboxTimeoutError: Command timed out",
        "sample 1: failed in 0.25 s (3/3): ValueError: " + "z" * 100,
    ]


def _finished_report(log_dir: Path, samples: int = 40) -> _Report:
    config = DemoConfig(samples=samples)
    report = _Report(config, log_dir)
    for id in range(1, samples + 1):
        report.outcomes[id] = config.expected(id)
    report.entered = report.logs_written = samples
    report.execs = 4 * samples
    report.latencies = [0.01 * k for k in range(1, 4 * samples + 1)]
    report.peak_sandboxes, report.peak_subprocesses = 8, 2
    return report


@pytest.mark.parametrize("width", WIDTHS)
def test_the_summary_fits_and_names_its_columns(tmp_path: Path, width: int) -> None:
    log_dir = tmp_path / ("a-long-directory-name-" * 4) / "demo-20261203-080000"
    report = _finished_report(log_dir)
    table, ok = _summary(report, 1.25, 0)
    assert ok
    lines = render(table, width)
    text = "\n".join(lines)
    assert all(len(line) <= width for line in lines), text
    assert max(len(line) for line in lines) <= 80  # the table is as narrow at any width
    header = next(line for line in lines if "measure" in line)
    assert [cell.strip() for cell in header.split("┃")[1:4]] == ["measure", "value", "check"]
    assert re.search(r"processes left behind\s*│\s*0\s*│\s*ok", text)
    assert re.search(r"sandboxes left behind\s*│\s*0\s*│\s*ok", text)
    assert "FAIL" not in text
    assert "nan" not in text
    # The paths are under the table, each whole on one line.
    logs, trace = _locations(report)
    assert logs == f"sample logs: {log_dir}"
    assert trace.startswith("trace file:  ")
    assert trace.endswith(".gz (at exit)")


def test_the_summary_without_execs_says_so() -> None:
    report = _Report(DemoConfig(samples=2), Path("logs"))
    table, ok = _summary(report, 0.0, 0)
    text = "\n".join(render(table, 80))
    assert not ok
    assert "no exec finished" in text
    assert "nan" not in text


def test_sandboxes_left_behind_fail_the_summary(tmp_path: Path) -> None:
    table, ok = _summary(_finished_report(tmp_path), 1.0, 0, sandboxes_left=2)
    assert not ok
    assert re.search(r"sandboxes left behind\s*│\s*2\s*│\s*FAIL", "\n".join(render(table, 80)))


@pytest.mark.parametrize(
    ("remote", "shown"), [(2, "0 here, 2 on hosts"), (None, "0 here, ? on hosts")]
)
def test_remote_processes_left_behind_fail_the_summary(
    tmp_path: Path, remote: int | None, shown: str
) -> None:
    table, ok = _summary(_finished_report(tmp_path), 1.0, 0, remote_left=remote)
    assert not ok
    text = "\n".join(render(table, 80))
    assert re.search(rf"processes left behind\s*│\s*{re.escape(shown)}\s*│\s*FAIL", text), text


def test_recorded_sandboxes_are_this_processs_unresolved_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the summary counts over SSH: the harness record ``corral sandbox cleanup`` reads."""
    monkeypatch.setenv("CORRAL_STATE_DIR", str(tmp_path))
    directory = tmp_path / "harnesses"
    directory.mkdir()
    header = '{"harness":{"pid":%d,"start":null,"boot":"","argv":[]}}\n'
    (directory / "ours.jsonl").write_text(
        header % os.getpid()
        + '{"add":{"type":"ssh","id":"remote-1","dir":"/tmp/x","tag":"t"}}\n'
        + '{"add":{"type":"ssh","id":"remote-2","dir":"/tmp/y","tag":"u"}}\n'
        + '{"remove":"remote-1"}\n',
        encoding="utf-8",
    )
    (directory / "theirs.jsonl").write_text(
        header % (os.getpid() + 1) + '{"add":{"type":"ssh","id":"other","dir":"/","tag":"v"}}\n',
        encoding="utf-8",
    )
    assert set(_recorded_sandboxes()) == {"remote-2"}
    assert _recorded_sandboxes()["remote-2"]["tag"] == "u"
