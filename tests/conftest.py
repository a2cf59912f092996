"""Shared fixtures: every async test runs under trio and under asyncio."""

from __future__ import annotations

import os
import secrets
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Keep the suite's trace records out of the user's own trace directory."""
    import tempfile

    if "CORRAL_TRACE_FILE" not in os.environ:
        directory = tempfile.mkdtemp(prefix="corral-test-traces-")
        os.environ["CORRAL_TRACE_FILE"] = os.path.join(directory, f"trace-{os.getpid()}.log")


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run on both backends, in real time (for tests where children run)."""
    return str(request.param)


def python(code: str) -> list[str]:
    """A command that runs *code* in a fresh interpreter."""
    return [sys.executable, "-c", code]


def unique_sleep() -> str:
    """A ``sleep`` duration no other test uses, to find our processes by cmdline."""
    return f"300.{secrets.randbelow(10**8):08d}"


def processes_matching(marker: str) -> list[int]:
    """PIDs of live (non-zombie) processes whose command line contains *marker*."""
    found = []
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{name}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmdline and state != b"Z":
            found.append(int(name))
    return found


def open_fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


class Fifo:
    """A FIFO that children write one byte to when they are ready.

    The test side is opened read-write and non-blocking, so opening never
    blocks and reads never see EOF; :meth:`wait` awaits readiness instead of
    sleeping.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        os.mkfifo(path)
        self.fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)

    def shell_ready(self) -> str:
        """A shell snippet that signals readiness."""
        return f"printf x > '{self.path}'"

    async def wait(self, count: int = 1) -> None:
        """Wait until *count* children have signalled."""
        got = 0
        while got < count:
            try:
                got += len(os.read(self.fd, count - got))
            except BlockingIOError:
                await anyio.wait_readable(self.fd)

    def pending(self) -> int:
        """Signals that arrived and were not waited for yet (consumes them)."""
        try:
            return len(os.read(self.fd, 1 << 16))
        except BlockingIOError:
            return 0

    def close(self) -> None:
        os.close(self.fd)


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Fifo]:
    f = Fifo(tmp_path / "ready")
    try:
        yield f
    finally:
        f.close()


@pytest.fixture
def no_leftovers() -> Iterator[str]:
    """A unique marker; the test fails if processes carrying it are left behind."""
    marker = unique_sleep()
    yield marker
    left = processes_matching(marker)
    for pid in left:
        os.kill(pid, 9)
    assert left == [], f"processes left running: {left}"


def make_file(path: Path, content: str = "", executable: bool = False) -> Path:
    path.write_text(content)
    mode = path.stat().st_mode
    path.chmod(mode | stat.S_IXUSR if executable else mode & ~0o111)
    return path
