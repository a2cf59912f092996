"""Where trace files live, and what is done to them on disk: shared appends, gzip at exit.

* :func:`default_dir`: ``traces`` in the user data directory for ``corral``.
* :func:`open_shared`: a trace file opened for appending, holding a shared
  ``flock``, so several processes may write one ``$CORRAL_TRACE_FILE`` and the
  last to exit knows it is the last.
* :func:`compress`: gzip a plain trace file to ``<name>.gz`` (appending a
  member when that exists), then delete it.
* :func:`is_trace_file_name`: the names trace files have (for rotation and listing).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["compress", "default_dir", "is_trace_file_name", "open_shared"]


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
