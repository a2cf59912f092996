"""Finding, counting and waiting for processes: the leak checks of the suite.

Waiting for a process to be gone uses a pidfd (``os.pidfd_open``), which is
readable once the process has terminated, whether or not it is our child: a
test never sleeps to give a SIGKILLed process time to die.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import select
import signal
import sys
import time

from corral._core._procfs import cmdline, pids, read_stat

__all__ = [
    "kill_and_wait",
    "open_fd_count",
    "processes_matching",
    "python",
    "unique_sleep",
    "wait_gone",
]


def python(code: str) -> list[str]:
    """A command that runs *code* in a fresh interpreter."""
    return [sys.executable, "-c", code]


def unique_sleep() -> str:
    """A ``sleep`` duration no other test uses, to find our processes by cmdline."""
    return f"300.{secrets.randbelow(10**8):08d}"


def processes_matching(marker: str) -> list[int]:
    """PIDs of live (non-zombie) processes whose command line contains *marker*."""
    me = os.getpid()
    found = []
    for pid in pids():
        if pid == me:
            continue
        line = cmdline(pid)
        info = read_stat(pid)
        if line is not None and marker in line and info is not None and info.alive:
            found.append(pid)
    return found


def open_fd_count() -> int:
    """How many file descriptors this process has open."""
    return len(os.listdir("/proc/self/fd"))


def wait_gone(pids: list[int], timeout: float = 10.0) -> list[int]:
    """Wait until each of *pids* has terminated (zombies count as gone); return those left.

    Blocks the calling thread for at most *timeout* seconds in all.
    """
    deadline = time.monotonic() + timeout
    left = []
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue  # gone already
        try:
            if not select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
                info = read_stat(pid)
                if info is not None and info.alive:
                    left.append(pid)
        finally:
            os.close(fd)
    return left


def kill_and_wait(pids: list[int], timeout: float = 10.0) -> list[int]:
    """SIGKILL *pids* and wait until they are gone; return any that are not.

    Each is signalled through a pidfd opened first, so a process that has
    exited in the meantime is never mistaken for another one given its pid.
    """
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(fd, signal.SIGKILL)
        finally:
            os.close(fd)
    return wait_gone(pids, timeout)
