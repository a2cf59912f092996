"""The ``corral`` command line, through click's runner and as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

import corral
from corral._cli import main


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert corral.__version__ in result.output


def test_demo_under_asyncio() -> None:
    result = CliRunner().invoke(main, ["demo", "--backend", "asyncio"])
    assert result.exit_code == 0, result.output
    assert "demo under asyncio" in result.output
    assert "6 passed, 0 failed" in result.output
    assert "0 processes left" in result.output


def test_demo_as_a_real_process() -> None:
    script = Path(sys.executable).with_name("corral")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "corral"]
    done = subprocess.run(
        [*command, "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "demo under trio" in done.stdout
    assert "kept 1024 bytes" in done.stdout


def test_unknown_backend_is_refused() -> None:
    result = CliRunner().invoke(main, ["demo", "--backend", "curio"])
    assert result.exit_code == 2
    assert "curio" in result.output
