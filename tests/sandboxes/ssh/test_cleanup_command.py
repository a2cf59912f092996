"""``corral sandbox cleanup ssh`` removes the remote sandboxes a killed harness left."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests.support.killable import GONE_TIMEOUT, READY_TIMEOUT, Harness, HarnessStarter
from tests.support.processes import wait_gone
from tests.support.sshd import OpenSSHServer


def _recorded_dirs(harness: Harness) -> list[Path]:
    dirs = []
    for record in (harness.directory / "state" / "harnesses").glob("*.jsonl"):
        for line in record.read_text().splitlines():
            item = json.loads(line)
            if "add" in item:
                dirs.append(Path(item["add"]["dir"]))
    return sorted(dirs)


# With --config, its keys reach the host; without, the settings recorded with each sandbox.
@pytest.mark.parametrize(("backend", "with_config"), [("trio", True), ("asyncio", False)])
def test_cleanup_ssh_removes_the_remote_dirs_of_a_killed_harness(
    start_harness: HarnessStarter, sshd: OpenSSHServer, backend: str, with_config: bool
) -> None:
    harness = start_harness(backend, samples=10, sandbox_config=sshd.sandbox_config())
    harness.process.send_signal(signal.SIGKILL)
    harness.process.wait(timeout=READY_TIMEOUT)
    dirs = _recorded_dirs(harness)
    assert len(dirs) == 10
    assert all(d.is_dir() for d in dirs)  # the server is this machine

    config = ["--config", str(harness.directory / "ssh.json")] if with_config else []
    done = harness.run_cli("sandbox", "cleanup", "ssh", *config, "--backend", backend)

    assert done.returncode == 0, done.stderr
    removed = sorted(line.split()[2] for line in done.stdout.splitlines())
    assert removed == [str(d) for d in dirs]
    assert [d for d in dirs if d.exists()] == []
    assert wait_gone(harness.commands(), GONE_TIMEOUT) == []
    again = harness.run_cli("sandbox", "cleanup", "ssh")
    assert (again.returncode, again.stdout) == (0, "ssh: nothing to clean\n")
