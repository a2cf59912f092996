"""Stopping processes found by group or by tag, and the guardian process's main loop.

This module is imported by corral (the local sandbox's cleanup and
``corral sandbox cleanup`` call :func:`stop_processes`), and it is also run
as a script: the guardian (see :mod:`._guardian`) is
``python -I -S _reaper.py TAG``, started once per harness. Run that way it
imports nothing of corral but :mod:`corral._core._procfs`, loaded from its
file, so it starts in a few milliseconds and does not depend on the
harness's ``sys.path``.

The guardian reads lines from its stdin, the read end of a pipe whose
write end only the harness holds:

* ``+ PGID`` / ``- PGID``: start / stop watching process group *PGID*;
* ``d HEX`` / ``r HEX``: remove / no longer remove the directory whose
  file-system path is the hex-encoded *HEX* when the harness is gone.

The kernel closes the pipe when the harness exits, however it exits
(SIGKILL and the OOM killer included), so end of file is the guardian's cue:
it stops every watched group and every process whose environment carries
``CORRAL_HARNESS=TAG`` (which finds children that left their group with
``setsid``), removes the directories and exits. It ignores SIGINT, SIGHUP
and SIGTERM, which a terminal or a service manager sends to the harness's
whole group or cgroup at once: it must outlive the harness, not die with it.

Written by hand because nothing else gives this guarantee at no cost per
spawn: ``PR_SET_PDEATHSIG`` needs a ``preexec_fn``, which forces CPython off
its ``vfork``/``posix_spawn`` path (about 3x slower spawns here), reaches
only the direct child, and fires when the *thread* that spawned it exits.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from typing import TYPE_CHECKING

if __package__:
    from .._core import _procfs
else:  # run as the guardian: load the /proc parser from its file, not the package
    import importlib.util

    def _load_procfs() -> types.ModuleType:
        path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "_core", "_procfs.py")
        spec = importlib.util.spec_from_file_location("_corral_procfs", path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses looks the module up
        spec.loader.exec_module(module)
        return module

    _procfs = _load_procfs()

if TYPE_CHECKING:
    import types
    from collections.abc import Iterable

__all__ = ["GUARDIAN_GRACE", "HARNESS_TAG", "remove_tree", "stop_processes"]

#: The environment variable that tags every process a harness starts.
HARNESS_TAG = "CORRAL_HARNESS"
#: Seconds the guardian gives processes between SIGTERM and SIGKILL.
GUARDIAN_GRACE = 0.5
_POLL = 0.01
_ROUNDS = 3
_GATHER = 0.05


def _signal(pgids: Iterable[int], pids: Iterable[int], sig: int) -> None:
    # ProcessLookupError: gone; PermissionError: (some members) not ours to signal.
    for pgid in pgids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _alive(pgids: set[int], pids: set[int]) -> tuple[set[int], set[int]]:
    """The groups of *pgids* with a live member and the live pids of *pids*, from one scan."""
    live_groups: set[int] = set()
    live_pids: set[int] = set()
    for info in _procfs.processes():
        if not info.alive:
            continue
        if info.pgrp in pgids:
            live_groups.add(info.pgrp)
        if info.pid in pids:
            live_pids.add(info.pid)
    return live_groups, live_pids


def _tagged(tag: bytes | None, exclude: int) -> tuple[set[int], set[int]]:
    """Live processes carrying *tag* in their environment, and their groups (ours excepted)."""
    if tag is None:
        return set(), set()
    own = os.getpgrp()
    pids = set(_procfs.processes_with_environ(tag, exclude=exclude))
    pgids: set[int] = set()
    for pid in pids:
        info = _procfs.read_stat(pid)
        if info is not None and info.pgrp > 1 and info.pgrp != own:
            pgids.add(info.pgrp)
    return pgids, pids


def stop_processes(groups: Iterable[int], tag: bytes | None, grace: float) -> int:
    """Stop the process *groups* and every process whose environment holds *tag*.

    Each is sent SIGTERM (with its group), given up to *grace* seconds to
    exit, then sent SIGKILL; processes found by *tag* are looked for again
    (a process may fork while we look) until none is left or after three
    rounds. With *grace* ``0`` everything gets SIGKILL at once. This
    process and its own group are never signalled.

    This blocks the calling thread, for at most about ``grace + 0.1`` s.

    Args:
        groups: Process group ids to stop (leaders of groups corral made).
        tag: ``b"NAME=value"``; ``None`` looks for no tagged process.
        grace: Seconds between SIGTERM and SIGKILL.

    Returns:
        How many processes were found running.
    """
    me = os.getpid()
    own = os.getpgrp()
    pgids = {pgid for pgid in groups if pgid > 1 and pgid != own}
    tagged_groups, pids = _tagged(tag, me)
    pgids |= tagged_groups
    if not (pgids or pids):
        return 0  # the common case: one scan of /proc, nothing found
    live_groups, _ = _alive(pgids, set())
    found = set(pids)
    if live_groups:
        found |= {info.pid for info in _procfs.processes() if info.alive and info.pgrp in pgids}
    if grace > 0 and (live_groups or pids):
        _signal(live_groups, pids, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while True:
            live_groups, pids = _alive(live_groups, pids)
            if not (live_groups or pids) or time.monotonic() >= deadline:
                break
            time.sleep(_POLL)
    for _ in range(_ROUNDS):
        if not (live_groups or pids):
            break
        _signal(live_groups, pids, signal.SIGKILL)
        live_groups, pids = _tagged(tag, me)
        found |= pids
    return len(found)


_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def remove_tree(path: str) -> None:
    """Remove the directory *path* and everything in it, however deep; ignore what cannot go.

    ``shutil.rmtree`` recurses once per level (a sandbox command can make a
    tree thousands of levels deep with ``mkdir a; cd a`` in a loop: it raises
    ``RecursionError``), and paths that deep are longer than the system takes.
    This walks with one directory descriptor open at a time, relative to it,
    and climbs back through ``..``. A directory that cannot be removed is
    left, with whatever it holds; a symlink is removed, never followed.
    """
    try:
        fd = os.open(path, _DIRECTORY)
    except FileNotFoundError:
        return
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(path)  # a symlink or a file where the directory was
        return
    names: list[str] = []  # the way down from *path*
    stuck: set[tuple[int, int]] = set()  # directories that would not go
    while True:
        child = None
        with contextlib.suppress(OSError), os.scandir(fd) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    info = entry.stat(follow_symlinks=False)
                    if child is None and (info.st_dev, info.st_ino) not in stuck:
                        child = entry.name
                else:
                    with contextlib.suppress(OSError):
                        os.unlink(entry.name, dir_fd=fd)
        if child is not None:
            try:
                below = os.open(child, _DIRECTORY, dir_fd=fd)
            except OSError:
                with contextlib.suppress(OSError):
                    info = os.stat(child, dir_fd=fd, follow_symlinks=False)
                    stuck.add((info.st_dev, info.st_ino))
                continue
            os.close(fd)
            fd = below
            names.append(child)
            continue
        # Nothing left to descend into: climb up and remove this level.
        here = os.fstat(fd)
        if not names:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.rmdir(path)
            return
        try:
            up = os.open("..", _DIRECTORY & ~os.O_NOFOLLOW, dir_fd=fd)
        except OSError:
            os.close(fd)
            return
        os.close(fd)
        fd = up
        name = names.pop()
        try:
            os.rmdir(name, dir_fd=fd)
        except OSError:
            stuck.add((here.st_dev, here.st_ino))


def _guard(tag: str) -> None:
    """The guardian: follow the harness's messages on stdin; at EOF, stop and remove."""
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    groups: set[int] = set()
    directories: set[str] = set()
    pending = b""
    while True:
        try:
            chunk = os.read(0, 65536)
        except InterruptedError:
            continue
        except OSError:
            break
        if not chunk:
            break
        # Let a burst of messages gather in the pipe: while we are not blocked
        # in read(), the harness's writes wake no one, and cost it no more
        # than a copy. Ending is noticed at most this much later.
        time.sleep(_GATHER)
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        for line in lines:
            kind, _, value = line.partition(b" ")
            if kind == b"+":
                groups.add(int(value))
            elif kind == b"-":
                groups.discard(int(value))
            elif kind == b"d":
                directories.add(os.fsdecode(bytes.fromhex(value.decode())))
            elif kind == b"r":
                directories.discard(os.fsdecode(bytes.fromhex(value.decode())))
    stop_processes(groups, f"{HARNESS_TAG}={tag}".encode(), GUARDIAN_GRACE)
    for directory in directories:
        remove_tree(directory)


if __name__ == "__main__":
    os.closerange(3, 65536)  # hold nothing of the harness's but the pipe (fd 0)
    _guard(sys.argv[1])
