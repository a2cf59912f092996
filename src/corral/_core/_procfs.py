"""Reading Linux's ``/proc``: the one parser of process state that corral uses.

Process-group supervision asks whether a group still has a live member, the
local sandbox looks for processes by a tag in their environment, and the demo
and the test suite count what was left behind. All of them read ``/proc``
through this module, so the format is parsed in one place.

``/proc/PID/stat`` holds the command name in parentheses, and the name may
itself contain spaces and parentheses: the fields are read after the *last*
``)``. A process that exits while it is being read is simply not reported.

A process inside ``execve`` has, for a moment, no arguments and no environment:
the kernel has dropped the old image and not yet set up the new one's, and
reports both as empty. A scan that landed there would miss a process that is
about to run (measured: 7 of 300 reads right after a shell signalled readiness
and ran ``exec sleep``), so :func:`cmdline` and :func:`processes_with_environ`
read such a process again until its new image is in place.

Nothing here is a checkpoint; everything is plain blocking file reads of
kernel memory, fast enough for the event loop thread, except
:func:`wait_gone` and :func:`kill_and_wait`, which block the calling thread
(for test fixtures and tools outside any event loop), and the rare re-read of
a process in ``execve`` (bounded by :data:`EXEC_SETTLE`).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "ProcStat",
    "boot_id",
    "cmdline",
    "group_has_live_member",
    "kill_and_wait",
    "live_descendants",
    "pids",
    "processes",
    "processes_with_environ",
    "procfs_available",
    "read_stat",
    "start_time",
    "wait_gone",
]

_PROC = "/proc"
#: Seconds to keep re-reading a process caught inside ``execve`` (it takes microseconds
#: to milliseconds; the bound only keeps a process stuck there from stalling a scan).
EXEC_SETTLE = 1.0
#: Kernel threads are ``kthreadd`` (pid 2) and its children: no arguments, ever.
_KTHREADD = 2


@dataclass(frozen=True, slots=True)
class ProcStat:
    """The fields of ``/proc/PID/stat`` that corral uses.

    Attributes:
        pid: The process id.
        state: One letter: ``R``, ``S``, ``D``, ``T``, ``Z`` (zombie), ...
        ppid: The parent's pid.
        pgrp: The process group id.
        session: The session id.
    """

    pid: int
    state: str
    ppid: int
    pgrp: int
    session: int

    @property
    def alive(self) -> bool:
        """Whether the process is running (anything but a zombie or dead)."""
        return self.state not in ("Z", "X")


def procfs_available() -> bool:
    """Whether ``/proc`` can be read here."""
    return os.path.isdir(f"{_PROC}/self")


def pids() -> list[int]:
    """The pids in ``/proc`` now (empty when it cannot be read)."""
    try:
        names = os.listdir(_PROC)
    except OSError:
        return []
    return [int(name) for name in names if name.isdigit()]


def _parse_stat(pid: int, raw: bytes) -> ProcStat | None:
    # Fields after the parenthesised command name: state ppid pgrp session ...
    fields = raw[raw.rfind(b")") + 2 :].split(b" ", 4)
    if len(fields) < 4:
        return None
    try:
        return ProcStat(pid, fields[0].decode(), int(fields[1]), int(fields[2]), int(fields[3]))
    except ValueError:
        return None


def read_stat(pid: int) -> ProcStat | None:
    """The state of *pid*, or ``None`` if it is gone (or not readable)."""
    try:
        with open(f"{_PROC}/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    return _parse_stat(pid, raw)


def start_time(pid: int) -> int | None:
    """When *pid* started, in clock ticks since boot, or ``None`` if it is gone.

    With :func:`boot_id`, this tells a process from a later one given the
    same pid: a pid is reused, a (boot, pid, start time) triple never is.
    """
    try:
        with open(f"{_PROC}/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    # Field 22 of stat; the fields after the command name start at field 3.
    fields = raw[raw.rfind(b")") + 2 :].split(b" ", 20)
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def boot_id() -> str:
    """This boot's random id (``/proc/sys/kernel/random/boot_id``), or ``""`` if unknown."""
    try:
        with open(f"{_PROC}/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def processes() -> Iterator[ProcStat]:
    """Every process that can be read now, zombies included."""
    for pid in pids():
        info = read_stat(pid)
        if info is not None:
            yield info


def group_has_live_member(pgid: int) -> bool:
    """Whether process group *pgid* has a member that is not a zombie.

    Without ``/proc``, ``True`` (the caller's ``kill(-pgid, 0)``, which counts
    zombies as alive, is then all there is to go by).
    """
    if not procfs_available():
        return True
    return any(info.pgrp == pgid and info.alive for info in processes())


def live_descendants(root: int) -> list[int]:
    """Pids of the live descendants of *root* (not *root* itself), from one scan."""
    children: dict[int, list[int]] = {}
    alive: set[int] = set()
    for info in processes():
        children.setdefault(info.ppid, []).append(info.pid)
        if info.alive:
            alive.add(info.pid)
    found: list[int] = []
    todo = list(children.get(root, ()))
    while todo:
        pid = todo.pop()
        if pid in alive:
            found.append(pid)
        todo.extend(children.get(pid, ()))
    return sorted(found)


def _read(pid: int, name: str) -> bytes | None:
    try:
        with open(f"{_PROC}/{pid}/{name}", "rb") as f:
            return f.read()
    except OSError:  # gone, or not ours to read
        return None


def _in_execve(pid: int) -> bool:
    """Whether *pid* is between two images: alive, no kernel thread, and no arguments.

    Every process that runs a program has at least one byte of arguments (the
    kernel gives even an empty ``argv`` an empty ``argv[0]``), unlike its
    environment, which ``env -i`` empties for good.
    """
    if _read(pid, "cmdline") != b"":
        return False
    info = read_stat(pid)
    return info is not None and info.alive and _KTHREADD not in (pid, info.ppid)


def _read_image(pid: int, name: str) -> bytes | None:
    """``cmdline`` or ``environ`` of *pid*, read again while it is inside ``execve``.

    Nothing signals the end of an ``execve``, so this yields the CPU and looks
    again, for at most :data:`EXEC_SETTLE` seconds.
    """
    raw = _read(pid, name)
    if raw != b"":
        return raw
    deadline = time.monotonic() + EXEC_SETTLE
    while _in_execve(pid) and time.monotonic() < deadline:
        os.sched_yield()
    return _read(pid, name)


def cmdline(pid: int) -> str | None:
    """The command line of *pid*, its arguments joined by spaces (``None`` if gone)."""
    raw = _read_image(pid, "cmdline")
    if raw is None:
        return None
    return raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")


def processes_with_environ(entry: bytes, *, exclude: int | None = None) -> list[int]:
    """Pids of live processes whose environment holds *entry* (``b"NAME=value"``).

    Only processes whose environment this process may read are found (its
    own user's, or all of them as root). *exclude* is left out (usually this
    process).
    """
    found = []
    for pid in pids():
        if pid == exclude:
            continue
        environ = _read_image(pid, "environ")
        if environ is None:
            continue
        if environ.startswith(entry + b"\0") or (b"\0" + entry + b"\0") in environ:
            info = read_stat(pid)
            if info is not None and info.alive:
                found.append(pid)
    return found


def wait_gone(pids: list[int], timeout: float = 10.0) -> list[int]:
    """Wait until each of *pids* has terminated (zombies count as gone); return those left.

    Waits on pidfds; blocks the calling thread for at most *timeout* seconds in all.
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
