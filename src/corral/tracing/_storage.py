"""Where trace files live, and what is done to them on disk: shared appends, gzip at exit.

* :func:`default_dir`: ``traces`` in the user data directory for ``corral``.
* :func:`open_shared`: a trace file opened for appending, holding a shared
  ``flock``, so several processes may write one ``$CORRAL_TRACE_FILE`` and the
  last to exit knows it is the last.
* :func:`compress`: gzip a plain trace file to ``<name>.gz`` (appending a
  member when that exists), then delete it.
* :func:`is_trace_file_name`: the names trace files have (for rotation and listing).
* :func:`writers`: the processes holding a trace file open for writing (their
  shared ``flock``), as far as the system tells (Linux's ``/proc/locks``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["compress", "default_dir", "is_trace_file_name", "open_shared", "writers"]

_PROC_LOCKS = "/proc/locks"


def is_trace_file_name(name: str) -> bool:
    """Whether *name* is the name the file handler gives trace files.

    That is ``trace-<anything>.log``, or the same gzipped (``.log.gz``).
    """
    return name.startswith("trace-") and name.endswith((".log", ".log.gz"))


def default_dir() -> Path:
    """``traces`` in the user data directory for ``corral`` (platformdirs, imported here)."""
    import platformdirs

    return platformdirs.user_data_path("corral") / "traces"


def open_shared(path: Path) -> tuple[int, bool]:
    """Open *path* for appending and hold a shared ``flock`` on it.

    Returns the descriptor and whether it is locked (some filesystems cannot
    lock). If the file was compressed away between the open and the lock, by
    another process exiting, the new path is opened instead.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
        except OSError:
            return fd, False
        try:
            opened = os.fstat(fd)
            current = os.stat(path)
        except FileNotFoundError:
            pass
        except BaseException:
            os.close(fd)
            raise
        else:
            if (opened.st_dev, opened.st_ino) == (current.st_dev, current.st_ino):
                return fd, True
        os.close(fd)


def compress(path: Path) -> None:
    """Gzip *path* to ``<path>.gz`` (appended as a new member if it exists), then delete it.

    The compressed file is created readable by its owner only, as the plain one is.
    """
    import gzip
    import shutil

    target = path.with_name(path.name + ".gz")
    partial = path.with_name(f"{path.name}.gz.{os.getpid()}.tmp")
    try:
        # 0600 as the plain file is: a trace holds whole command lines.
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with open(fd, "wb") as out:
            with contextlib.suppress(FileNotFoundError), open(target, "rb") as earlier:
                shutil.copyfileobj(earlier, out)
            with (
                open(path, "rb") as plain,
                gzip.GzipFile(filename=path.name, mode="wb", fileobj=out) as packed,
            ):
                shutil.copyfileobj(plain, packed, 1 << 20)
        os.replace(partial, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise
    os.unlink(path)


def writers(path: Path) -> tuple[int, ...] | None:
    """The ids of the processes holding a ``flock`` on *path*: those writing it.

    Every writer holds a shared ``flock`` on the trace file as long as it has
    it open (:func:`open_shared`), so an empty answer means no process is
    writing it any more (it exited, or was killed). Read from
    ``/proc/locks`` without taking a lock, so a writer is never disturbed.
    The ids are those of the processes that took the locks (a forked child
    shares its parent's). ``None`` when that cannot be told: no
    ``/proc/locks`` (not Linux), or the file cannot be examined.
    """
    try:
        st = os.stat(path)
        with open(_PROC_LOCKS, encoding="ascii", errors="replace") as locks:
            lines = locks.readlines()
    except OSError:
        return None
    wanted = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    found: list[int] = []
    for line in lines:
        # "1: FLOCK  ADVISORY  READ 1234 fe:00:2146902 0 EOF"; "1: -> FLOCK ..." waits.
        fields = line.split()
        if len(fields) < 6 or fields[1] != "FLOCK" or fields[5] != wanted:
            continue
        with contextlib.suppress(ValueError):
            found.append(int(fields[4]))
    return tuple(sorted(set(found)))
