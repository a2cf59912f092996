"""The harness's side of the guardian: what must not outlive this process.

A supervised child is stopped by its supervisor on every path the harness
lives through (see :mod:`._subprocess`). For the paths it does not live
through (SIGKILL, the OOM killer, a crash in C), one guardian process per
harness (see :mod:`._reaper`) is told, over a pipe, which process groups
and directories are live, and stops and removes them when the pipe closes.

It costs one short ``write`` per group started and one per group reaped,
and one ``posix_spawn`` of an isolated interpreter, the first time a group
is watched. Every child corral starts also carries
``CORRAL_HARNESS=<token>`` in its environment (see :func:`harness_tag`),
by which the guardian finds descendants that left their group.

Each process has its own guardian: a child made with ``os.fork()`` forgets
its parent's (its copy of the pipe is closed, so that the parent's
guardian still sees the parent die) and starts one of its own if it needs
one. ``CORRAL_GUARDIAN=0`` in the environment turns the guardian off (the
supervisors still stop their children on every path the harness lives
through).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sys
import threading

from ._reaper import HARNESS_TAG

__all__ = [
    "GUARDIAN_ENV",
    "forget_directory",
    "forget_group",
    "guardian_pid",
    "harness_tag",
    "watch_directory",
    "watch_group",
]

logger = logging.getLogger("corral.subprocess")

#: ``CORRAL_GUARDIAN=0`` turns the guardian off.
GUARDIAN_ENV = "CORRAL_GUARDIAN"
_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_reaper.py")


class _Guardian:
    """The pipe to this process's guardian, and what it has been told."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.lock = threading.Lock()
        self.token = os.urandom(8).hex()
        self.fd: int | None = None
        self.pid: int | None = None
        self.groups: set[int] = set()
        self.directories: set[str] = set()
        self.backlog = b""
        self.disabled = os.environ.get(GUARDIAN_ENV, "1").strip() == "0"

    def _start(self) -> None:
        read_fd, write_fd = os.pipe()
        try:
            devnull = os.devnull
            self.pid = os.posix_spawn(
                sys.executable,
                [sys.executable, "-I", "-S", _SCRIPT, self.token],
                {},
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, read_fd, 0),
                    (os.POSIX_SPAWN_OPEN, 1, devnull, os.O_WRONLY, 0),
                    (os.POSIX_SPAWN_OPEN, 2, devnull, os.O_WRONLY, 0),
                ],
                setsid=True,  # out of the terminal's and the harness's signals
            )
        except OSError as exc:
            os.close(write_fd)
            logger.warning("cannot start the guardian (%r): children may outlive a crash", exc)
            self.disabled = True
            return
        finally:
            os.close(read_fd)
        os.set_blocking(write_fd, False)
        self.fd = write_fd
        # What a new guardian must know, when it replaces one that died.
        replay = [b"+ %d\n" % pgid for pgid in self.groups]
        replay += [b"d %s\n" % os.fsencode(path).hex().encode() for path in self.directories]
        self.backlog = b"".join(replay) + self.backlog

    def send(self, line: bytes) -> None:
        """Queue *line* for the guardian and write what the pipe takes (never blocks)."""
        if self.disabled:
            return
        if self.fd is None:
            self._start()
            if self.fd is None:
                return
        data = self.backlog + line
        try:
            written = os.write(self.fd, data)
        except BlockingIOError:
            written = 0  # the guardian is behind: keep it for the next message
        except OSError as exc:
            if exc.errno != errno.EPIPE:
                raise
            # The guardian died (someone killed it): start another, telling it everything.
            self._close()
            self.backlog = b""
            self._start()
            return
        self.backlog = data[written:]

    def _close(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
        if self.pid is not None:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, os.WNOHANG)  # a guardian that died: reap it
        self.fd = None
        self.pid = None

    def forget_parent(self) -> None:
        """In a child made by ``fork()``: drop the parent's guardian, so it sees the parent die."""
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
        self._reset()  # a fresh state, with a lock no other thread can hold


_guardian = _Guardian()
os.register_at_fork(after_in_child=_guardian.forget_parent)


def harness_tag() -> tuple[str, str]:
    """The ``(name, value)`` environment entry every child of this harness carries."""
    return HARNESS_TAG, _guardian.token


def watch_group(pgid: int) -> None:
    """Have the guardian stop process group *pgid* if this process dies first.

    This is not a checkpoint and never blocks; the first call starts the guardian.
    """
    guardian = _guardian
    with guardian.lock:
        guardian.groups.add(pgid)
        guardian.send(b"+ %d\n" % pgid)


def forget_group(pgid: int) -> None:
    """The group *pgid* is gone (or stopped by its supervisor): the guardian lets it be."""
    guardian = _guardian
    with guardian.lock:
        if pgid in guardian.groups:
            guardian.groups.discard(pgid)
            guardian.send(b"- %d\n" % pgid)


def watch_directory(path: str) -> None:
    """Have the guardian remove the directory *path* if this process dies first."""
    guardian = _guardian
    with guardian.lock:
        guardian.directories.add(path)
        guardian.send(b"d %s\n" % os.fsencode(path).hex().encode())


def forget_directory(path: str) -> None:
    """The directory *path* has been removed (or handed over): the guardian lets it be."""
    guardian = _guardian
    with guardian.lock:
        if path in guardian.directories:
            guardian.directories.discard(path)
            guardian.send(b"r %s\n" % os.fsencode(path).hex().encode())


def guardian_pid() -> int | None:
    """The pid of this process's guardian, or ``None`` if none is running."""
    return _guardian.pid
