"""Fixtures for the SSH sandbox tests: a real OpenSSH server on a loopback port.

The server needs root and ``/usr/sbin/sshd`` (``make test`` installs
openssh-server and sudo). Without them the SSH tests skip, unless
``CORRAL_REQUIRE_SSH=1`` (set by CI) turns the skip into a failure.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from tests.support.fifo import Fifo
from tests.support.processes import kill_and_wait, wait_gone
from tests.support.sshd import OpenSSHServer, SSHServerUnavailable


def ssh_unavailable(reason: str) -> NoReturn:
    """Skip the test, or fail it when ``CORRAL_REQUIRE_SSH=1`` (as in CI)."""
    if os.environ.get("CORRAL_REQUIRE_SSH") == "1":
        pytest.fail(f"CORRAL_REQUIRE_SSH=1 but the SSH tests cannot run: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenSSHServer]:
    """One OpenSSH server for the whole session (started; stopped at the end)."""
    # The server makes its directory and ancestors searchable by the test users,
    # since sshd reads authorized_keys with the logging-in user's permissions.
    server = OpenSSHServer(tmp_path_factory.mktemp("sshd"))
    try:
        server.start()
    except SSHServerUnavailable as error:
        ssh_unavailable(str(error))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fresh_sshd(sshd: OpenSSHServer) -> Iterator[OpenSSHServer]:
    """The session's server, running, for tests that stop or kill it.

    It is (re)started before the test, and again after it, so that later tests
    find it running.
    """
    sshd.start()
    yield sshd
    sshd.start()


@pytest.fixture
def no_remote_leftovers(sshd: OpenSSHServer) -> Iterator[OpenSSHServer]:
    """Fail the test if anything it ran on the server is still alive afterwards.

    Only sshd's own per-connection processes may remain. A process still
    found may be on its way out (a remote kill, a closed channel): each is
    waited for on its pidfd, up to 10 s in all, before it counts as left
    behind. Leftovers are killed so that they do not fail later tests too.
    """
    yield sshd
    found = remote_leftovers(sshd)
    still = wait_gone(list(found), timeout=10.0)
    left = {pid: found[pid] for pid in still}
    kill_and_wait(still)
    assert left == {}, f"processes left running on the SSH server: {left}"


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory the SSH test users can reach (the test's own tmp_path is root's only)."""
    directory = Path(tempfile.mkdtemp(prefix="corral-ssh-shared-"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def remote_fifo(shared_dir: Path) -> Iterator[Fifo]:
    """A FIFO remote commands signal readiness on (``shell_ready()``), without sleeping."""
    fifo = Fifo(shared_dir / "ready", shared=True)
    try:
        yield fifo
    finally:
        fifo.close()


@pytest.fixture
def remote_gate(shared_dir: Path) -> Iterator[Fifo]:
    """A FIFO remote commands wait on (``read line < gate``) until the test releases them."""
    fifo = Fifo(shared_dir / "gate", shared=True)
    try:
        yield fifo
    finally:
        fifo.close()


def remote_leftovers(server: OpenSSHServer) -> dict[int, str]:
    """Processes of the test users other than sshd's, with their command lines."""
    sessions = set(server.session_processes())
    pids = server.processes_of(server.username) + server.processes_of(server.other_username)
    return {pid: _cmdline(pid) for pid in pids if pid not in sessions}


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"
