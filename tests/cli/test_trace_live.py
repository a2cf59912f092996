"""``corral trace`` on the file of a harness that is still running, then on the one it left.

The harness (``tests/support/harness.py``) runs samples whose sandbox commands
sleep; once they all run, its trace file shows them running now, in their
samples, written by that process. Killed with SIGKILL, it leaves the file as
it was (plus, here, a record cut short, as a write interrupted by the kill
would leave): the same actions are then unfinished, and nothing writes it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from corral.tracing._records import ActionTraceRecord, read_trace_file
from tests.support.killable import READY_TIMEOUT, Harness, HarnessStarter

SAMPLES = 3


def wait_for_records(path: Path, ready: int) -> None:
    """Wait until *path* holds *ready* ``Sandbox`` enter records (flushed within a second)."""
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        found = 0
        if path.exists():
            found = sum(
                1
                for r in read_trace_file(path).records
                if isinstance(r, ActionTraceRecord) and r.action == "Sandbox" and r.event == "enter"
            )
        if found >= ready:
            return
        assert time.monotonic() < deadline, f"only {found} of {ready} records were written"
        time.sleep(0.05)  # the flusher writes every second; there is nothing to await


def cli_json(harness: Harness, *args: str) -> dict[str, Any]:
    done = harness.run_cli("trace", *args, "--json")
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def sandbox_rows(report: dict[str, Any], marker: str) -> list[dict[str, Any]]:
    return [r for r in report["running"] if r["action"] == "Sandbox" and marker in r["detail"]]


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_running_on_a_live_harness_then_on_the_file_a_sigkill_left(
    start_harness: HarnessStarter, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # the CLI's tables, unwrapped
    monkeypatch.setenv("NO_COLOR", "1")
    harness = start_harness(backend, samples=SAMPLES, bare=1)
    path = harness.directory / "trace.log"
    wait_for_records(path, SAMPLES)

    # Live: what runs now, in which sample, written by which process.
    live = cli_json(harness, "running", str(path))
    assert live["writer"]["state"] == "writing"
    assert live["writer"]["pids"] == [harness.process.pid]
    rows = sandbox_rows(live, harness.marker)
    assert sorted(r["sample_id"] for r in rows) == list(range(SAMPLES))
    assert {r["task"] for r in rows} == {"harness"}
    assert len({r["span_id"] for r in rows}) == SAMPLES
    bare = [r for r in live["running"] if r["action"] == "Subprocess" and r["sample_id"] is None]
    assert [r["task"] for r in bare] == ["harness"]  # the bare subprocess() call of the task
    durations = [r["duration"] for r in live["running"]]
    assert durations == sorted(durations, reverse=True)  # the longest-running first
    text = harness.run_cli("trace", "running", str(path))
    assert text.returncode == 0, text.stderr
    assert f"Being written by process {harness.process.pid}" in text.stdout
    for n in range(SAMPLES):
        assert f"harness / sample {n}" in text.stdout
    tree = harness.run_cli("trace", "tree", str(path))
    assert tree.returncode == 0, tree.stderr
    assert "task harness" in tree.stdout
    assert tree.stdout.count("sample ") >= SAMPLES

    # Killed: the file stays, with a record cut short at its end.
    harness.process.kill()
    harness.process.communicate()
    with path.open("a") as f:
        f.write('{"timestamp": "2026-12-03T08:00:00.000000+00:00", "level": "TR')
    done = harness.run_cli("trace", "anomalies", str(path), "--json")
    assert done.returncode == 0, done.stderr
    assert "truncated last line" in done.stderr
    left = json.loads(done.stdout)
    assert left["writer"]["state"] == "stopped"
    assert left["writer"]["pids"] == []
    rows = sandbox_rows(left, harness.marker)
    assert sorted(r["sample_id"] for r in rows) == list(range(SAMPLES))
    text = harness.run_cli("trace", "anomalies", str(path))
    assert text.returncode == 0, text.stderr
    assert "No process is writing it any more" in text.stdout
    assert "harness / sample 0" in text.stdout
