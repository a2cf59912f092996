"""Shared fixtures: every async test runs under trio and under asyncio.

The helpers the fixtures are built on live in :mod:`tests.support`.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fifo import Fifo
from tests.support.killable import HarnessStarter
from tests.support.processes import (
    open_fd_count,
    processes_matching,
    python,
    unique_sleep,
)

#: pytester, for the tests of corral's own pytest plugin (tests/plugin).
pytest_plugins = ["pytester"]

__all__ = [
    "Fifo",
    "make_file",
    "open_fd_count",
    "processes_matching",
    "python",
    "unique_sleep",
]


_trace_directory = pytest.StashKey[str]()
_state_directory = pytest.StashKey[str]()


#: inspect_ai's variables that corral reads as aliases of its own: a user's inspect
#: settings must not change what the suite sees (tests set them where they test them).
_INSPECT_ALIASES = (
    "INSPECT_DISPLAY",
    "INSPECT_SANDBOX_MAX_EXEC_OUTPUT_SIZE",
    "INSPECT_SANDBOX_MAX_READ_FILE_SIZE",
)


def pytest_configure(config: pytest.Config) -> None:
    """Keep the suite's trace records and leftover records out of the user's own directories."""
    import tempfile

    for name in _INSPECT_ALIASES:
        os.environ.pop(name, None)

    if "CORRAL_STATE_DIR" not in os.environ:
        state = tempfile.mkdtemp(prefix="corral-test-state-")
        os.environ["CORRAL_STATE_DIR"] = state
        config.stash[_state_directory] = state
    if "CORRAL_TRACE_FILE" not in os.environ:
        directory = tempfile.mkdtemp(prefix="corral-test-traces-")
        os.environ["CORRAL_TRACE_FILE"] = os.path.join(directory, f"trace-{os.getpid()}.log")
        config.stash[_trace_directory] = directory


def pytest_unconfigure(config: pytest.Config) -> None:
    """Close the suite's trace file and remove the directory made for it."""
    import shutil
    import sys

    state = config.stash.get(_state_directory, None)
    if state is not None:
        os.environ.pop("CORRAL_STATE_DIR", None)
        shutil.rmtree(state, ignore_errors=True)
    directory = config.stash.get(_trace_directory, None)
    if directory is None:
        return
    install = sys.modules.get("corral.tracing._install")
    if install is not None:
        install._at_exit()  # flushed and closed; tracing is off for what is left of the run
    os.environ.pop("CORRAL_TRACE_FILE", None)
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run on both backends, in real time (for tests where children run)."""
    return str(request.param)


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Fifo]:
    f = Fifo(tmp_path / "ready")
    try:
        yield f
    finally:
        f.close()


@pytest.fixture
def no_leftovers(corral_no_leftovers: str) -> str:
    """The plugin's ``corral_no_leftovers`` (see :mod:`corral.pytest_plugin`), by its old name.

    A unique marker; the test fails if it leaves processes (those carrying
    the marker among them), file descriptors, temporary files or sandbox
    directories behind.
    """
    return corral_no_leftovers


@pytest.fixture
def start_harness() -> Iterator[HarnessStarter]:
    """Start harness processes to kill; whatever they leave is killed and removed after."""
    starter = HarnessStarter()
    try:
        yield starter
    finally:
        starter.close()


def make_file(path: Path, content: str = "", executable: bool = False) -> Path:
    path.write_text(content)
    mode = path.stat().st_mode
    path.chmod(mode | stat.S_IXUSR if executable else mode & ~0o111)
    return path
