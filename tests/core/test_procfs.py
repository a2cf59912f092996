"""The ``/proc`` reader sees a process that is inside ``execve``.

A shell that signals readiness and then runs ``exec sleep`` is, for a moment
after the signal, between two images: the kernel reports no arguments and no
environment for it. Read blindly, about one such process in fifty was missed
on this machine (the guardian's sweep after the harness's death and the leak
checks find processes this way). Each round here reads right after the
signal, so a reader without the re-read fails within a few hundred rounds.
"""

from __future__ import annotations

import os
import subprocess
from typing import TYPE_CHECKING

from corral._core._procfs import _in_execve, _read_image, cmdline, processes_with_environ
from tests.support.fifo import Fifo
from tests.support.processes import unique_sleep

if TYPE_CHECKING:
    from pathlib import Path

ROUNDS = 300


def _caught_after_ready(fifo: Fifo, env: dict[str, str], marker: str) -> subprocess.Popen[bytes]:
    """Start ``sh -c 'ready; exec sleep MARKER'`` and return once it has signalled."""
    child = subprocess.Popen(["sh", "-c", f"{fifo.shell_ready()}; exec sleep {marker}"], env=env)
    assert fifo.wait_blocking(1, 30.0) == 1
    return child


def test_the_arguments_of_a_process_in_execve_are_read(tmp_path: Path) -> None:
    fifo = Fifo(tmp_path / "ready")
    marker = unique_sleep()
    missed = 0
    try:
        for _ in range(ROUNDS):
            child = _caught_after_ready(fifo, dict(os.environ), marker)
            line = cmdline(child.pid)
            missed += line is None or marker not in line
            child.kill()
            child.wait()
    finally:
        fifo.close()
    assert missed == 0


def test_the_environment_of_a_process_in_execve_is_read(tmp_path: Path) -> None:
    """What the guardian's sweep reads to find a harness's processes by their tag."""
    fifo = Fifo(tmp_path / "ready")
    name, value = "CORRAL_TEST_TAG", unique_sleep()
    missed = 0
    try:
        for _ in range(ROUNDS):
            child = _caught_after_ready(fifo, {**os.environ, name: value}, unique_sleep())
            missed += f"{name}={value}".encode() not in (_read_image(child.pid, "environ") or b"")
            child.kill()
            child.wait()
    finally:
        fifo.close()
    assert missed == 0


def test_a_process_with_an_empty_environment_is_not_taken_for_one_in_execve(
    tmp_path: Path,
) -> None:
    """``env -i`` empties the environment for good: a scan must not wait on it."""
    fifo = Fifo(tmp_path / "ready")
    marker = unique_sleep()
    child = subprocess.Popen(["sh", "-c", f"{fifo.shell_ready()}; exec env -i sleep {marker}"])
    try:
        assert fifo.wait_blocking(1, 30.0) == 1
        # Once the sleep runs (its arguments are there), it has no environment at all.
        while not (cmdline(child.pid) or "").startswith("sleep "):
            os.sched_yield()
        with open(f"/proc/{child.pid}/environ", "rb") as f:
            assert f.read() == b""
        assert not _in_execve(child.pid)
        assert child.pid not in processes_with_environ(b"CORRAL_TEST_TAG=x")
    finally:
        child.kill()
        child.wait()
        fifo.close()
