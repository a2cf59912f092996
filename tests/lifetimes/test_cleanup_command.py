"""``corral sandbox cleanup local`` sweeps what dead harnesses left, and nothing else.

The harness's guardian removes its local sandboxes when it dies; these tests
turn the guardian off (``CORRAL_GUARDIAN=0``), as if it had died with the
harness, so that the records are all that is left to go by.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from corral._core._procfs import boot_id
from tests.support.killable import GONE_TIMEOUT, READY_TIMEOUT, HarnessStarter
from tests.support.processes import unique_sleep, wait_gone

NO_GUARDIAN = {"CORRAL_GUARDIAN": "0"}


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_cleanup_removes_what_a_killed_harness_left_and_then_finds_nothing(
    start_harness: HarnessStarter, backend: str
) -> None:
    harness = start_harness(backend, samples=5, style="setsid", env=NO_GUARDIAN)
    harness.process.send_signal(signal.SIGKILL)
    harness.process.wait(timeout=READY_TIMEOUT)
    left = harness.commands()
    dirs = harness.sandbox_dirs()
    assert len(left) == 10  # without a guardian, all of it outlived the harness
    assert len(dirs) == 5

    done = harness.run_cli("sandbox", "cleanup", "local", "--backend", backend)

    assert done.returncode == 0, done.stderr
    lines = sorted(done.stdout.splitlines())
    assert lines == [f"local: removed {d} (2 processes stopped)" for d in dirs]
    assert wait_gone(left, GONE_TIMEOUT) == []
    assert harness.sandbox_dirs() == []
    again = harness.run_cli("sandbox", "cleanup", "local")
    assert (again.returncode, again.stdout) == (0, "local: nothing to clean\n")


def test_cleanup_never_touches_a_running_harness(start_harness: HarnessStarter) -> None:
    harness = start_harness("trio", samples=3)
    dirs = harness.sandbox_dirs()

    everything = harness.run_cli("sandbox", "cleanup", "local")
    one = harness.run_cli("sandbox", "cleanup", "local", dirs[0].name)

    assert (everything.returncode, everything.stdout) == (0, "local: nothing to clean\n")
    assert one.returncode == 1
    assert f"local sandbox {dirs[0].name!r} belongs to a harness that is still running" in (
        one.stderr
    )
    assert harness.sandbox_dirs() == dirs
    assert len(harness.commands()) == 3
    # And it still works: it ends on SIGTERM, having cleaned up itself.
    harness.process.send_signal(signal.SIGTERM)
    assert harness.process.wait(timeout=READY_TIMEOUT) == -signal.SIGTERM
    assert wait_gone(harness.commands(), GONE_TIMEOUT) == []
    assert harness.sandbox_dirs() == []


def test_a_reused_pid_does_not_protect_a_dead_harness(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "harnesses").mkdir(parents=True)
    directory = tmp_path / "corral-sandbox-reused"
    directory.mkdir()
    tag = f"CORRAL_LOCAL_SANDBOX={os.urandom(8).hex()}"
    marker = unique_sleep()
    name, _, value = tag.partition("=")
    left = subprocess.Popen(["sleep", marker], env={**os.environ, name: value})
    # The record names a live pid (the sleep's) with another start time: a dead harness.
    record = [
        {"harness": {"pid": left.pid, "start": 1, "boot": boot_id(), "argv": []}},
        {"add": {"type": "local", "id": directory.name, "dir": str(directory), "tag": tag}},
    ]
    path = state / "harnesses" / f"{boot_id()}-{left.pid}-1.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in record) + '{"remo')
    try:
        done = subprocess.run(
            [sys.executable, "-m", "corral", "sandbox", "cleanup", "local", directory.name],
            capture_output=True,
            text=True,
            timeout=READY_TIMEOUT,
            check=False,
            env={**os.environ, "CORRAL_STATE_DIR": str(state)},
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout == f"local: removed {directory} (1 process stopped)\n"
        assert left.wait(timeout=GONE_TIMEOUT) == -signal.SIGTERM
        assert not directory.exists()
        assert not path.exists()  # nothing left in the record: the record is gone
    finally:
        left.kill()
        left.wait()
