"""Finding, counting and waiting for processes: the leak checks of the suite.

Waiting for a process to be gone uses a pidfd (``os.pidfd_open``), which is
readable once the process has terminated, whether or not it is our child: a
test never sleeps to give a SIGKILLed process time to die.
"""

from __future__ import annotations

import os
import secrets
import sys

from corral._core._procfs import cmdline, kill_and_wait, pids, read_stat, wait_gone

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
