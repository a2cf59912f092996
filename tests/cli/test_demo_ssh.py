"""``corral demo --sandbox ssh``: the summary counts the remote side of what is left behind.

A real OpenSSH server (tests/support/sshd.py). It needs root and sshd; without
them the tests skip, unless ``CORRAL_REQUIRE_SSH=1`` (as in CI) makes that a
failure, as in tests/sandboxes/ssh.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.sshd import OpenSSHServer, SSHServerUnavailable

SAMPLES = 4

#: Runs ``corral`` with the ssh provider's record of a finished cleanup turned off, as
#: when a host cannot be reached: each sandbox stays recorded as not cleaned up.
UNRESOLVED = (
    "import corral.sandboxes._ssh._environment as environment\n"
    "environment.resolve_sandbox = lambda id: None\n"
    "from corral._cli import main\n"
    "main()\n"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenSSHServer]:
    server = OpenSSHServer(tmp_path_factory.mktemp("sshd"))
    try:
        server.start()
    except SSHServerUnavailable as error:
        if os.environ.get("CORRAL_REQUIRE_SSH") == "1":
            pytest.fail(f"CORRAL_REQUIRE_SSH=1 but the SSH tests cannot run: {error}")
        pytest.skip(str(error))
    try:
        yield server
    finally:
        server.stop()


def run(
    code: list[str], *args: str, state: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *code, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "80", "CORRAL_STATE_DIR": str(state)},
    )


def config_file(server: OpenSSHServer, tmp_path: Path) -> Path:
    config = tmp_path / "ssh.json"
    config.write_text(json.dumps(server.sandbox_config()), encoding="utf-8")
    return config


def demo_args(config: Path, logs: Path) -> list[str]:
    return ["demo", "--samples", str(SAMPLES), "--sandbox", f"ssh:{config}", "--logs", str(logs)]


def test_a_demo_over_ssh_leaves_nothing_behind(server: OpenSSHServer, tmp_path: Path) -> None:
    config = config_file(server, tmp_path)
    done = run(["-m", "corral"], *demo_args(config, tmp_path / "logs"), state=tmp_path / "state")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "sandboxes/ssh" in done.stdout  # the live view's limits
    assert re.search(r"processes left behind\s*│\s*0\s*│\s*ok", done.stdout), done.stdout
    assert re.search(r"sandboxes left behind\s*│\s*0\s*│\s*ok", done.stdout), done.stdout


def test_remote_sandboxes_not_known_cleaned_up_are_counted(
    server: OpenSSHServer, tmp_path: Path
) -> None:
    config = config_file(server, tmp_path)
    state = tmp_path / "state"
    done = run(["-c", UNRESOLVED], *demo_args(config, tmp_path / "logs"), state=state)
    assert done.returncode == 1, done.stdout + done.stderr
    assert re.search(rf"sandboxes left behind\s*│\s*{SAMPLES}\s*│\s*FAIL", done.stdout), done.stdout
    assert done.stdout.rstrip().endswith("NOT as designed")
    # What the summary counted is what `corral sandbox cleanup` finds once the demo is gone
    # (here the directories were removed after all: the records are dropped).
    (record,) = (state / "harnesses").glob("*.jsonl")
    assert record.read_text(encoding="utf-8").count('"add"') == SAMPLES
    swept = run(["-m", "corral"], "sandbox", "cleanup", "ssh", "--config", str(config), state=state)
    assert swept.returncode == 0, swept.stdout + swept.stderr
    assert not list((state / "harnesses").glob("*.jsonl"))
