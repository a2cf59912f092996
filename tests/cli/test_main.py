"""The ``corral`` command line, through click's runner and as a real process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

import corral
from corral._cli import main
from corral.util import SampleLog, SubtaskEvent


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert corral.__version__ in result.output


def _check_logs(logs: Path, samples: int) -> None:
    """Every sample wrote a valid SampleLog with a store into one demo-<time>/ directory."""
    (run,) = logs.glob("demo-*")
    files = sorted(run.glob("sample-*.json"))
    assert len(files) == samples
    for file in files:
        log = SampleLog.read_json(file)
        assert file.name == f"sample-{log.id}.json"
        assert log.store, file
        assert log.events, file


def test_demo_under_asyncio(tmp_path: Path) -> None:
    args = ["demo", "--samples", "6", "--backend", "asyncio", "--logs", str(tmp_path)]
    # A child of ours from before the demo (a test's server, say) is not the demo's leftover.
    with subprocess.Popen(["sleep", "60"]) as older:
        try:
            result = CliRunner().invoke(main, args)
        finally:
            older.kill()
    assert result.exit_code == 0, result.output
    assert "demo under asyncio" in result.output
    assert "as designed" in result.output
    assert re.search(r"processes left behind\s*│\s*0\s", result.output), result.output
    assert re.search(r"demo \(asyncio\) .* 6/6 100%", result.output), result.output
    _check_logs(tmp_path, 6)
    log = SampleLog.read_json(next(tmp_path.glob("demo-*/sample-1.json")))
    assert log.store["DemoProgress:stage"] == "done"
    assert any(isinstance(event, SubtaskEvent) for event in log.events)


def test_demo_as_a_real_process(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("corral")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "corral"]
    done = subprocess.run(
        [*command, "demo", "--samples", "6", "--logs", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "demo under trio" in done.stdout
    assert re.search(r"hit time limit\s*│\s*1\s", done.stdout), done.stdout
    assert re.search(r"timed out \(exec timeout\)\s*│\s*1\s", done.stdout), done.stdout
    assert "\x1b[" not in done.stdout  # not a terminal, NO_COLOR: no escape codes
    _check_logs(tmp_path, 6)


def test_unknown_sandbox_type_is_refused(tmp_path: Path) -> None:
    args = ["demo", "--sandbox", "no-such-sandbox", "--logs", str(tmp_path)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert "no-such-sandbox" in result.output
    assert "--sandbox" in result.output
    assert not list(tmp_path.iterdir())


def test_unknown_backend_is_refused() -> None:
    result = CliRunner().invoke(main, ["demo", "--backend", "curio"])
    assert result.exit_code == 2
    assert "curio" in result.output


def test_demo_with_a_misconfigured_sandbox_says_so_once(tmp_path: Path) -> None:
    """Regression: ``corral demo --sandbox ssh`` printed the same ValueError once per sample."""
    result = CliRunner().invoke(
        main, ["demo", "--sandbox", "ssh", "--samples", "20", "--logs", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert result.output.count("the ssh sandbox needs a configuration") == 1
    assert "Traceback" not in result.output
    assert "Error: the sandbox 'ssh' could not be set up" in result.output
