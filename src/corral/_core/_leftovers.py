"""Records of what a harness made and must remove: for ``corral sandbox cleanup``.

A harness that dies before its cleanup (SIGKILL, the OOM killer, a power
cut, a host unreachable for longer than the cleanup retried) leaves
sandboxes behind. The guardian removes the local ones at once; the others
(directories on SSH hosts, and local ones if the guardian died too) are found
from these records.

Each harness process that makes a sandbox writes one file,
``<state dir>/harnesses/<boot id>-<pid>-<start time>.jsonl``, where the
state dir is ``$CORRAL_STATE_DIR`` or :func:`platformdirs.user_state_dir`
(``~/.local/state/corral`` on Linux). It is JSON Lines, appended to and never
rewritten by its harness:

* first ``{"harness": {"pid", "start", "boot", "argv", "created"}}``;
* ``{"add": {"type", "id", ...}}`` when a sandbox is made (what else is in
  it is the provider's: a directory, a host, a tag);
* ``{"remove": ID}`` once its cleanup succeeded.

A harness removes its file when nothing it recorded is left. A harness is
alive while a process with its pid *and* start time runs in the same boot,
so a reused pid never protects a dead harness's leftovers, and
:func:`harness_records` readers never touch a live harness's entries. A last
line cut short by a crash is ignored.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from . import _procfs

__all__ = [
    "STATE_DIR_ENV",
    "HarnessRecord",
    "harness_records",
    "record_sandbox",
    "records_directory",
    "resolve_sandbox",
]

logger = logging.getLogger("corral.sandbox")

#: Where the records go instead of the user's state directory.
STATE_DIR_ENV = "CORRAL_STATE_DIR"


def records_directory() -> str:
    """The directory holding every harness's record (it may not exist yet)."""
    base = os.environ.get(STATE_DIR_ENV)
    if not base:
        import platformdirs  # only once a record is read or written

        base = platformdirs.user_state_dir("corral")
    return os.path.join(base, "harnesses")


def _identity(pid: int) -> tuple[str, int | None]:
    return _procfs.boot_id(), _procfs.start_time(pid)


class _Writer:
    """This process's record: opened on the first sandbox, removed with the last."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.lock = threading.Lock()
        self.fd: int | None = None
        self.path: str | None = None
        self.live: set[str] = set()
        self.broken = False

    def _open(self) -> int:
        directory = records_directory()
        os.makedirs(directory, mode=0o700, exist_ok=True)
        pid = os.getpid()
        boot, start = _identity(pid)
        path = os.path.join(directory, f"{boot or 'unknown'}-{pid}-{start}.jsonl")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        header = {
            "pid": pid,
            "start": start,
            "boot": boot,
            "argv": sys.argv,
            "created": time.time(),
        }
        os.write(fd, _line({"harness": header}))
        self.fd, self.path = fd, path
        return fd

    def add(self, entry: dict[str, Any]) -> None:
        with self.lock:
            if self.broken:
                return
            try:
                fd = self.fd if self.fd is not None else self._open()
                os.write(fd, _line({"add": entry}))
            except OSError as exc:
                # A state directory we cannot write must not stop sandboxes
                # from working: say so once, and record nothing more.
                self.broken = True
                logger.warning(
                    "cannot record sandboxes in %s (%s): corral sandbox cleanup will not "
                    "find what this process leaves behind",
                    records_directory(),
                    exc,
                )
                return
            self.live.add(entry["id"])

    def remove(self, id: str) -> None:
        with self.lock:
            if self.fd is None or id not in self.live:
                return
            self.live.discard(id)
            if self.live:
                with contextlib.suppress(OSError):  # it stays recorded: swept later, harmlessly
                    os.write(self.fd, _line({"remove": id}))
                return
            # Nothing left to clean up: no record at all.
            os.close(self.fd)
            if self.path is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
            self.fd = self.path = None

    def forget_parent(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
        self._reset()


def _line(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode() + b"\n"


_writer = _Writer()
os.register_at_fork(after_in_child=_writer.forget_parent)


def record_sandbox(type: str, id: str, **details: Any) -> None:
    """Record that this harness made the sandbox *id* of *type*, until :func:`resolve_sandbox`.

    *details* (JSON-serialisable) are what the provider needs to remove it
    without this process. Not a checkpoint: one small ``write`` to a local
    file. When the state directory cannot be written, a warning is logged
    once and nothing more is recorded by this process.
    """
    _writer.add({"type": type, "id": id, **details})


def resolve_sandbox(id: str) -> None:
    """The sandbox *id* has been cleaned up: nothing is left to remove."""
    _writer.remove(id)


@dataclass
class HarnessRecord:
    """One harness's record, as read from its file.

    Attributes:
        path: The record's file.
        pid: The harness's pid.
        start: Its start time, in clock ticks since boot (``None``: unknown).
        boot: The boot it ran in.
        argv: Its command line.
        entries: What it made and did not remove, by id.
    """

    path: str
    pid: int
    start: int | None
    boot: str
    argv: list[str]
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def alive(self) -> bool:
        """Whether the harness is still running (same boot, pid and start time)."""
        if self.pid == os.getpid():
            return True
        boot, start = _identity(self.pid)
        if start is None or (self.boot and boot and boot != self.boot):
            return False
        # Without a start time recorded, a live pid may be the harness: leave it be.
        return self.start is None or start == self.start

    def resolve(self, ids: set[str]) -> None:
        """Drop *ids* from a dead harness's record; remove the file once it holds nothing.

        The file is replaced as a whole (written beside it, then renamed), so
        a cleanup that is itself interrupted leaves the old record or the new one.
        """
        for id in ids:
            self.entries.pop(id, None)
        if not self.entries:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            return
        header = {"pid": self.pid, "start": self.start, "boot": self.boot, "argv": self.argv}
        lines = [_line({"harness": header})]
        lines += [_line({"add": entry}) for entry in self.entries.values()]
        temporary = f"{self.path}.{os.getpid()}.tmp"
        with open(temporary, "wb") as f:
            f.writelines(lines)
        os.replace(temporary, self.path)


def _read(path: str) -> HarnessRecord | None:
    try:
        with open(path, "rb") as f:
            lines = f.read().split(b"\n")
    except FileNotFoundError:
        return None
    record: HarnessRecord | None = None
    for raw in lines:
        try:
            item = json.loads(raw)
        except ValueError:
            continue  # empty, or the last line cut short by a crash
        if not isinstance(item, dict):
            continue
        if "harness" in item and record is None:
            header = item["harness"]
            try:
                record = HarnessRecord(
                    path,
                    int(header["pid"]),
                    header.get("start"),
                    str(header.get("boot") or ""),
                    list(header.get("argv") or []),
                )
            except (KeyError, TypeError, ValueError):
                return None  # not a record of ours
        elif record is not None and isinstance(item.get("add"), dict) and "id" in item["add"]:
            entry = item["add"]
            record.entries[str(entry["id"])] = entry
        elif record is not None and "remove" in item:
            record.entries.pop(str(item["remove"]), None)
    return record


def harness_records() -> list[HarnessRecord]:
    """Every harness's record in the state directory, oldest first."""
    directory = records_directory()
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    records = []
    for name in names:
        if name.endswith(".jsonl"):
            record = _read(os.path.join(directory, name))
            if record is not None:
                records.append(record)
    return records
