"""Ctrl-C in ``corral demo``: one line, a partial summary and status 130, not a traceback.

The demo runs as a real process on a pseudo-terminal, where its live display
redraws while the samples run (on a pipe, rich draws only the last frame), so
the test sees a sample finish before it sends SIGINT to the demo's process
group, as a terminal does on Ctrl-C.
"""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from rich.console import Console

from corral._cli._demo import DemoConfig, _Report, _summary

#: How long a read waits for the demo's output before the test fails (a hang, not a timing).
PATIENCE = 60.0
#: Many samples, two at a time: the demo is far from done when the first one finishes.
SAMPLES = 200

_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _read(fd: int) -> bytes:
    """The next output on the terminal *fd*; ``b""`` once it is closed."""
    ready, _, _ = select.select([fd], [], [], PATIENCE)
    assert ready, f"the demo printed nothing for {PATIENCE} s"
    try:
        return os.read(fd, 1 << 16)
    except OSError:  # EIO: every process that had the terminal open has closed it
        return b""


def _text(output: bytes) -> str:
    """What the terminal showed, without escape codes."""
    return _ESCAPE.sub("", output.decode(errors="replace"))


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_ctrl_c_prints_a_partial_summary(tmp_path: Path, backend: str) -> None:
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    args = ["demo", "--backend", backend, "--samples", str(SAMPLES), "--max-sandboxes", "2"]
    # A child inherits an ignored SIGINT (the suite run as a background job, say); a handler
    # it does not inherit, so with one here the demo gets Ctrl-C as it would in a shell.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        demo = subprocess.Popen(
            [sys.executable, "-m", "corral", *args, "--logs", str(tmp_path)],
            stdin=secondary,
            stdout=secondary,
            stderr=secondary,
            env={**os.environ, "NO_COLOR": "1", "TERM": "xterm"},
            start_new_session=True,  # a group of its own, for the SIGINT
        )
    finally:
        signal.signal(signal.SIGINT, previous)
        os.close(secondary)
    received = b""
    try:
        while not re.search(rf"demo \({backend}\) .*\b[1-9]\d*/{SAMPLES}\b", _text(received)):
            chunk = _read(primary)
            assert chunk, f"the demo ended before it was interrupted:\n{_text(received)}"
            received += chunk
        os.killpg(demo.pid, signal.SIGINT)
        while chunk := _read(primary):
            received += chunk
        status = demo.wait()
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        os.close(primary)

    output = _text(received)
    assert status == 130, output
    assert "Traceback" not in output
    assert "ExceptionGroup" not in output
    finished = re.search(rf"^interrupted: (\d+) of {SAMPLES} samples finished\r?$", output, re.M)
    assert finished, output
    assert int(finished[1]) >= 1
    assert f"demo under {backend} (partial: interrupted)" in output
    assert re.search(rf"samples finished\s*│\s*{finished[1]} of {SAMPLES}\s", output), output
    assert re.search(r"processes left behind\s*│\s*0\s", output), output
    assert "FAIL" not in output, output


def test_a_partial_summary_with_nothing_finished(tmp_path: Path) -> None:
    report = _Report(DemoConfig(samples=3), tmp_path)
    table, _ = _summary(report, 0.0, 0, interrupted=True)
    buffer = io.StringIO()
    Console(file=buffer, width=120).print(table)
    text = buffer.getvalue()
    assert "(partial: interrupted)" in text
    assert "no exec finished" in text
    assert "nan" not in text
    assert "FAIL" not in text


@pytest.mark.anyio
async def test_a_command_killed_by_the_ctrl_c_is_no_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The terminal sends SIGINT to the demo's whole group: a command forked that
    # moment (not yet in a group of its own) dies of it, which is the interrupt,
    # not the sample failing (seen once with two suites running).
    import corral
    from corral._cli import _demo

    async def work(id: int, report: _Report) -> None:
        await _demo._exec(report, ["sh", "-c", "kill -INT $$"])

    monkeypatch.setattr(_demo, "_work", work)
    report = _Report(DemoConfig(samples=1), tmp_path)
    async with corral.task("demo", sandbox="local") as task:
        await _demo._run_sample(task, 1, report)
    assert report.outcomes == {}
    assert report.interrupted
    table, _ = _summary(report, 0.0, 0, interrupted=True)
    buffer = io.StringIO()
    Console(file=buffer, width=120).print(table)
    assert "FAIL" not in buffer.getvalue()
