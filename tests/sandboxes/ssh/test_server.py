"""The OpenSSH test server: what the SSH sandbox provider's tests rely on.

The helper is synchronous, so these tests are too: each drives asyncssh in its
own ``asyncio.run`` (asyncssh does not run under trio).
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

import asyncssh
import pytest

from tests.conftest import processes_matching, unique_sleep
from tests.support import sshd as _server
from tests.support.sshd import OpenSSHServer, SSHServerUnavailable

from .conftest import ssh_unavailable

pytestmark = pytest.mark.timeout(60)

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


@asynccontextmanager
async def connect(
    server: OpenSSHServer, **options: Any
) -> AsyncIterator[asyncssh.SSHClientConnection]:
    """An asyncssh connection to *server* as its user, hermetic (no agent, no config)."""
    settings: dict[str, Any] = {
        "port": server.port,
        "username": server.username,
        "client_keys": [str(server.client_key)],
        "known_hosts": str(server.known_hosts),
        "agent_path": None,
        "config": None,
        "login_timeout": 10,
    }
    settings.update(options)
    async with asyncssh.connect(server.host, **settings) as connection:
        yield connection


async def output(server: OpenSSHServer, command: str) -> str:
    async with connect(server) as connection:
        result = await connection.run(command, check=True)
    assert isinstance(result.stdout, str)
    return result.stdout


async def wait_for_processes(marker: str) -> list[int]:
    """Wait until processes carrying *marker* run (polled, up to 30 s); their PIDs."""
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline:
        if found := processes_matching(marker):
            return found
        await asyncio.sleep(0.01)
    raise AssertionError(f"no process carrying {marker} started")


def kill(pids: list[int]) -> None:
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.usefixtures("no_remote_leftovers")
def test_logs_in_as_the_user_with_sh(sshd: OpenSSHServer) -> None:
    assert pwd.getpwnam(sshd.username).pw_shell == "/bin/sh"
    stdout = run(output(sshd, 'id -un; echo "$0"; readlink /proc/$$/exe'))
    user, zero, exe = stdout.splitlines()
    assert user == sshd.username
    assert zero == "sh"
    assert Path(exe).name in {"sh", "dash", "bash"}


def test_logins_survive_another_pytest_session_starting(
    sshd: OpenSSHServer, tmp_path: Path
) -> None:
    """Regression: a pytest session started beside ours (a second ``make test``, a pytest
    run by a test) takes the search permission off /tmp/pytest-of-USER, and logins to a
    server whose authorized_keys lived below it were refused from then on."""
    assert run(output(sshd, "echo before")) == "before\n"
    (tmp_path / "test_nothing.py").write_text("def test_nothing(tmp_path):\n    pass\n")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    pytest_root = tmp_path.parents[-3]  # /tmp/pytest-of-USER
    assert pytest_root.name.startswith("pytest-of-")
    # What the other session did, made sure of: a suite running beside this one may
    # already have given the search permission back (its own fixtures add it).
    pytest_root.chmod(0o700)
    assert run(output(sshd, "echo after")) == "after\n"


def test_start_is_idempotent(sshd: OpenSSHServer) -> None:
    port = sshd.port
    sessions = sshd.session_processes()
    sshd.start()
    assert sshd.running
    assert sshd.port == port
    assert sshd.session_processes() == sessions


@pytest.mark.usefixtures("no_remote_leftovers")
def test_max_sessions_limits_channels_per_connection(sshd: OpenSSHServer) -> None:
    assert sshd.max_sessions == 10

    async def scenario() -> None:
        async with connect(sshd) as connection:
            opened = await asyncio.gather(
                *(connection.create_process("exec cat") for _ in range(11)),
                return_exceptions=True,
            )
            processes = [p for p in opened if isinstance(p, asyncssh.SSHClientProcess)]
            refused = [e for e in opened if isinstance(e, asyncssh.ChannelOpenError)]
            assert (len(processes), len(refused)) == (10, 1), opened
            for process in processes:
                process.stdin.write_eof()
            for process in processes:
                assert (await process.wait()).exit_status == 0

    run(scenario())


@pytest.mark.usefixtures("no_remote_leftovers")
def test_environment_from_the_client_is_not_applied(sshd: OpenSSHServer) -> None:
    async def scenario() -> str:
        async with connect(sshd) as connection:
            result = await connection.run(
                'echo "${CORRAL_PROBE-unset} ${LANG-unset}"',
                env={"CORRAL_PROBE": "sent", "LANG": "C.UTF-8"},
                check=True,
            )
        assert isinstance(result.stdout, str)
        return result.stdout

    assert run(scenario()) == "unset unset\n"


def test_wrong_host_key_is_rejected(sshd: OpenSSHServer) -> None:
    async def scenario() -> None:
        async with connect(sshd, known_hosts=str(sshd.wrong_known_hosts)):
            pass

    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        run(scenario())


def test_unauthorized_key_is_rejected(sshd: OpenSSHServer) -> None:
    async def scenario() -> None:
        async with connect(sshd, client_keys=[str(sshd.unauthorized_key)]):
            pass

    with pytest.raises(asyncssh.PermissionDenied):
        run(scenario())


@pytest.mark.usefixtures("no_remote_leftovers")
def test_sudo_to_the_other_user_only(sshd: OpenSSHServer) -> None:
    if shutil.which("sudo") is None:
        ssh_unavailable("sudo is not installed (`make test` installs it when run as root)")

    async def scenario() -> tuple[str, int | None]:
        async with connect(sshd) as connection:
            allowed = await connection.run(f"sudo -n -u {sshd.other_username} id -un", check=True)
            refused = await connection.run("sudo -n -u root true")
        assert isinstance(allowed.stdout, str)
        return allowed.stdout, refused.exit_status

    stdout, status = run(scenario())
    assert stdout == f"{sshd.other_username}\n"
    assert status not in (0, None)


@pytest.mark.usefixtures("no_remote_leftovers")
def test_kill_sessions_drops_connections_and_keeps_listening(fresh_sshd: OpenSSHServer) -> None:
    marker = unique_sleep()

    async def scenario() -> None:
        async with connect(fresh_sshd) as connection:
            process = await connection.create_process(f"exec sleep {marker}")
            await wait_for_processes(marker)
            assert fresh_sshd.session_processes()
            fresh_sshd.kill_sessions()
            assert fresh_sshd.session_processes() == []
            async with asyncio.timeout(5):
                await connection.wait_closed()
                await process.wait_closed()
        assert fresh_sshd.running
        assert await output(fresh_sshd, "echo again") == "again\n"

    try:
        run(scenario())
        # The command outlives its sshd, as after a crash of the server.
        assert processes_matching(marker)
    finally:
        kill(processes_matching(marker))


def test_stop_kills_everything_and_start_reuses_the_port(fresh_sshd: OpenSSHServer) -> None:
    server = fresh_sshd
    port = server.port
    attached, detached, other = unique_sleep(), unique_sleep(), unique_sleep()
    quiet = "</dev/null >/dev/null 2>&1"

    async def scenario() -> None:
        async with connect(server) as connection:
            await connection.run(f"setsid sleep {detached} {quiet} &", check=True)
            await connection.run(
                f"sudo -n -u {server.other_username} sh -c 'sleep {other} {quiet} &'"
            )
            await connection.create_process(f"exec sleep {attached}")
            for marker in (attached, detached, other):
                await wait_for_processes(marker)
            server.stop()
            assert not server.running
            async with asyncio.timeout(5):
                await connection.wait_closed()

    try:
        run(scenario())
        assert server.processes_of() == []
        assert server.processes_of(server.other_username) == []
        assert server.session_processes() == []
        assert processes_matching(attached) + processes_matching(detached) == []
        assert processes_matching(other) == []
    finally:
        kill(
            processes_matching(attached) + processes_matching(detached) + processes_matching(other)
        )

    server.start()
    assert server.running
    assert server.port == port
    assert run(output(server, "id -un")) == f"{server.username}\n"


def test_context_manager_starts_and_stops(tmp_path: Path, sshd: OpenSSHServer) -> None:
    # A second server for the same users, on its own port, next to the session's.
    with OpenSSHServer(tmp_path / "second") as server:
        assert server.port != sshd.port
        assert run(output(server, "id -un")) == f"{server.username}\n"
    assert not server.running
    assert server.processes_of() == []
    assert sshd.running
    assert run(output(sshd, "echo still")) == "still\n"


def test_sandbox_config(sshd: OpenSSHServer) -> None:
    assert sshd.sandbox_config() == {
        "hosts": [{"host": "127.0.0.1", "port": sshd.port, "username": sshd.username}],
        "client_keys": [str(sshd.client_key)],
        "known_hosts": str(sshd.known_hosts),
    }
    assert sshd.sandbox_config(known_hosts=None, connect_timeout=3)["known_hosts"] is None
    assert sshd.sandbox_config(connect_timeout=3)["connect_timeout"] == 3


def test_port_is_unknown_before_the_first_start(tmp_path: Path) -> None:
    server = OpenSSHServer(tmp_path)
    assert not server.running
    with pytest.raises(RuntimeError, match="never started"):
        _ = server.port


def test_unavailable_without_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(SSHServerUnavailable, match="needs root"):
        OpenSSHServer(tmp_path / "server").start()
    assert not (tmp_path / "server").exists()


def test_unavailable_without_sshd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(_server, "_SSHD", str(tmp_path / "no-sshd"))
    with pytest.raises(SSHServerUnavailable, match=r"install openssh-server.*make test"):
        OpenSSHServer(tmp_path / "server").start()


def test_invalid_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="POSIX username"):
        OpenSSHServer(tmp_path, username="Root User", other_username="other")
    with pytest.raises(ValueError, match="both username and other_username, or neither"):
        OpenSSHServer(tmp_path, username="alone")
    with pytest.raises(ValueError, match="differ"):
        OpenSSHServer(tmp_path, username="a", other_username="a")
    with pytest.raises(ValueError, match="max_sessions"):
        OpenSSHServer(tmp_path, max_sessions=0)


def test_users_are_locked_against_other_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_server, "_LOCK_DIRECTORY", tmp_path)
    monkeypatch.setattr(_server, "_LOCK_TIMEOUT", 0.2)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys; f = open(sys.argv[1], 'w'); fcntl.flock(f, fcntl.LOCK_EX); "
            "f.write('holder'); f.flush(); print('ready', flush=True); sys.stdin.read()",
            str(tmp_path / "corral-ssh-b.lock"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"ready\n"
        with pytest.raises(SSHServerUnavailable, match=r"pid holder\) has been running"):
            _server._lock_users("a", "b")
        assert not [path for path in _server._held_locks if path.parent == tmp_path]
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
    _server._lock_users("a", "b")
    _server._lock_users("b", "a")  # re-entrant within a process
    _server._unlock_users("a", "b")
    assert {path.name for path in _server._held_locks if path.parent == tmp_path} == {
        "corral-ssh-a.lock",
        "corral-ssh-b.lock",
    }
    _server._unlock_users("a", "b")
    assert not [path for path in _server._held_locks if path.parent == tmp_path]


def test_a_server_takes_users_no_other_process_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two test sessions on one machine never share (and so never kill) each other's users."""
    monkeypatch.setattr(_server, "_LOCK_DIRECTORY", tmp_path)
    first_pair = _server.DEFAULT_USERS[0]
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys; f = open(sys.argv[1], 'w'); fcntl.flock(f, fcntl.LOCK_EX); "
            "print('ready', flush=True); sys.stdin.read()",
            str(tmp_path / f"corral-ssh-{first_pair[0]}.lock"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"ready\n"
        assert _server._lock_free_pair() == _server.DEFAULT_USERS[1]
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
    _server._unlock_users(*_server.DEFAULT_USERS[1])
    assert not [path for path in _server._held_locks if path.parent == tmp_path]


def test_the_port_is_below_the_ephemeral_range_and_locked(sshd: OpenSSHServer) -> None:
    """A port that neither port 0 nor a client connection can be handed between restarts."""
    assert sshd.port < _server._ephemeral_low()
    assert _server._lock_path(f"port-{sshd.port}") in _server._held_locks
