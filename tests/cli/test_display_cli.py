"""``corral demo --display`` / ``$CORRAL_DISPLAY`` in a real process, and one-line CLI errors."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from corral._cli import main

SAMPLES = 4
#: How long a read waits for the demo's output before the test fails (a hang, not a timing).
PATIENCE = 60.0
#: What a rich live display sends a terminal when it starts (it hides the cursor).
HIDE_CURSOR = "\x1b[?25l"


def corral(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``corral ARGS`` as a process, its output on pipes."""
    return subprocess.run(
        [sys.executable, "-m", "corral", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "80", **(env or {})},
    )


def demo(logs: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run a small demo; check it went as designed; return what it printed before its summary."""
    done = corral("demo", "--samples", str(SAMPLES), "--logs", str(logs), *args, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.rstrip().endswith("as designed")
    before, title, _ = done.stdout.partition("corral ")
    assert title, done.stdout
    return before.strip()


def assert_one_line_per_sample(shown: str) -> None:
    lines = shown.splitlines()
    assert len(lines) == SAMPLES, shown
    ids = [int(m[1]) for line in lines if (m := re.match(r"sample (\d+): \S", line))]
    assert sorted(ids) == list(range(1, SAMPLES + 1)), shown
    assert [
        line.endswith(f"({k}/{SAMPLES})") or f"({k}/{SAMPLES}):" in line
        for k, line in enumerate(lines, 1)
    ] == [True] * SAMPLES, shown


def test_plain_prints_one_line_per_finished_sample(tmp_path: Path) -> None:
    shown = demo(tmp_path, "--display", "plain")
    assert_one_line_per_sample(shown)
    assert "limits:" not in shown


def test_plain_from_the_environment(tmp_path: Path) -> None:
    shown = demo(tmp_path, env={"CORRAL_DISPLAY": "plain"})
    assert_one_line_per_sample(shown)


def test_the_option_wins_over_the_environment(tmp_path: Path) -> None:
    assert demo(tmp_path, "--display", "none", env={"CORRAL_DISPLAY": "plain"}) == ""


def test_full_draws_the_live_view(tmp_path: Path) -> None:
    # On a pipe, rich draws the live view's last frame only.
    shown = demo(tmp_path, "--display", "full", env={"CORRAL_DISPLAY": "none"})
    assert re.match(rf"demo \(trio\) .*\b{SAMPLES}/{SAMPLES}\b.*100%", shown), shown
    assert "limits:" in shown
    assert "errors: 2" in shown  # the exec timeout and the time limit, by design


@pytest.mark.parametrize("display", ["none", "plain"])
def test_no_live_display_on_a_terminal(tmp_path: Path, display: str) -> None:
    args = ["demo", "--samples", str(SAMPLES), "--logs", str(tmp_path), "--display", display]
    primary, secondary = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "corral", *args],
            stdin=secondary,
            stdout=secondary,
            stderr=secondary,
            env={**os.environ, "TERM": "xterm", "NO_COLOR": "1"},
        )
    finally:
        os.close(secondary)
    received = b""
    try:
        while True:
            ready, _, _ = select.select([primary], [], [], PATIENCE)
            assert ready, f"the demo printed nothing for {PATIENCE} s"
            try:
                chunk = os.read(primary, 1 << 16)
            except OSError:  # EIO: the demo closed the terminal
                break
            if not chunk:
                break
            received += chunk
        status = process.wait()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(primary)
    output = received.decode(errors="replace")
    assert status == 0, output
    assert HIDE_CURSOR not in output
    assert "limits:" not in output
    samples = re.findall(r"^sample \d+: ", output, re.M)
    assert len(samples) == (SAMPLES if display == "plain" else 0), output


# -- one line per error -------------------------------------------------------------------


def one_line(args: list[str], status: int) -> str:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == status, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    return lines[0]


def test_a_log_directory_that_cannot_be_made_is_a_failure() -> None:
    line = one_line(["demo", "--logs", "/proc/nope"], 1)
    assert re.fullmatch(
        r"Error: cannot create the log directory '/proc/nope/demo-[\d-]+': "
        r"No such file or directory",
        line,
    ), line


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["demo", "--samples", "0"], "'--samples'"),
        (["demo", "--display", "fancy"], "'--display'"),
        (["demo", "--backend", "curio"], "'--backend'"),
        (["demo", "--sandbox", "no-such-sandbox"], "'--sandbox'"),
        (["no-such-command"], "'no-such-command'"),
        (["sandbox", "check"], "'TYPE'"),
        (["sandbox", "check", "no-such-sandbox"], "TYPE"),
    ],
)
def test_usage_errors_are_one_line_with_status_2(args: list[str], names: str) -> None:
    line = one_line(args, 2)
    assert line.startswith("Error: ")
    assert names in line
    assert line.endswith("--help')")


def test_a_file_as_the_log_directory_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("", encoding="utf-8")
    line = one_line(["demo", "--logs", str(tmp_path / "file")], 2)
    assert "'--logs'" in line


def test_sandbox_check_ssh_without_a_config_says_so_once() -> None:
    """Regression: every test of the suite failed in setup with the same error (56 of them)."""
    line = one_line(["sandbox", "check", "ssh"], 1)
    assert line.startswith("Error: the sandbox 'ssh' could not be set up, so no test ran: ")
    assert "the ssh sandbox needs a configuration" in line
