"""The ssh sandbox against a real OpenSSH server: quoting, env, users, pooling, lifecycle."""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shlex
import signal
from collections.abc import Awaitable, Callable

import anyio
import pytest

import corral
from corral.sandboxes._proxy import SandboxEnvironmentProxy
from corral.sandboxes._ssh import _pool
from corral.sandboxes._ssh._environment import SSHSandboxEnvironment
from corral.util import ExecResult, SandboxEvent, SandboxUnavailableError, sandbox
from tests.support.fifo import Fifo
from tests.support.sshd import OpenSSHServer

pytestmark = pytest.mark.anyio


async def test_arguments_are_never_interpreted(no_remote_leftovers: OpenSSHServer) -> None:
    config = no_remote_leftovers.sandbox_config()
    async with corral.task("t", sandbox=("ssh", config)) as task, task.sample(1):
        env = sandbox()
        await env.write_file("canary", "alive")
        nasty = [
            "; rm -rf canary",
            "$(rm canary)",
            "`rm canary`",
            "' ; rm canary; '",
            '"$HOME"',
            "a\nb",
            "*",
            "",
            "-n",
        ]
        result = await env.exec(["printf", "%s\\0", *nasty])
        assert result.stdout.split("\0")[:-1] == nasty
        assert await env.read_file("canary") == "alive"
        assert (await env.exec(["ls"])).stdout.split() == ["canary"]


async def test_env_reaches_the_command_without_accept_env(
    no_remote_leftovers: OpenSSHServer,
) -> None:
    config = no_remote_leftovers.sandbox_config()
    async with corral.task("t", sandbox=("ssh", config)) as task, task.sample(1):
        env = sandbox()
        value = "spaces and 'quotes' and $(not run)"
        result = await env.exec(["sh", "-c", 'printf %s "$CORRAL_T"'], env={"CORRAL_T": value})
        assert result.stdout == value
        path = await env.exec(["sh", "-c", 'printf %s "$PATH"'], env={"PATH": "/usr/bin:/bin"})
        assert path.stdout == "/usr/bin:/bin"
        with pytest.raises(ValueError, match="'BAD-NAME'"):
            await env.exec(["true"], env={"BAD-NAME": "x"})


async def test_user_through_sudo(no_remote_leftovers: OpenSSHServer) -> None:
    server = no_remote_leftovers
    async with corral.task("t", sandbox=("ssh", server.sandbox_config())) as task, task.sample(1):
        env = sandbox()
        # The sample's directory is private to the login user: run elsewhere.
        other = await env.exec(["id", "-un"], user=server.other_username, cwd="/")
        assert other.stdout.strip() == server.other_username
        same = await env.exec(["id", "-un"], user=server.username)
        assert same.stdout.strip() == server.username
        with pytest.raises(PermissionError) as info:
            await env.exec(["true"], user="root", cwd="/")
        assert "'root'" in str(info.value)
        assert "127.0.0.1" in str(info.value)


async def test_missing_program_and_cwd(no_remote_leftovers: OpenSSHServer) -> None:
    config = no_remote_leftovers.sandbox_config()
    async with corral.task("t", sandbox=("ssh", config)) as task, task.sample(1):
        env = sandbox()
        with pytest.raises(FileNotFoundError) as missing:
            await env.exec(["corral-no-such-program"])
        assert missing.value.filename == "corral-no-such-program"
        with pytest.raises(FileNotFoundError) as nocwd:
            await env.exec(["true"], cwd="no/such/dir")
        assert nocwd.value.filename == "no/such/dir"
        await env.write_file("plain", "x")
        with pytest.raises(NotADirectoryError):
            await env.exec(["true"], cwd="plain")
        with pytest.raises(FileNotFoundError):
            await env.exec(["/no/such/binary"])


async def test_signal_exit_status_and_events(no_remote_leftovers: OpenSSHServer) -> None:
    config = no_remote_leftovers.sandbox_config()
    async with corral.task("t", sandbox=("ssh", config)) as task, task.sample(1) as sample:
        env = sandbox()
        killed = await env.exec(["sh", "-c", "kill -s KILL $$"])
        assert (killed.success, killed.returncode) == (False, -9)
        echo = await env.exec(["echo", "hello"])
        assert echo == ExecResult(True, 0, "hello\n", "")
    events = [e for e in sample.transcript.events if isinstance(e, SandboxEvent)]
    assert [e.cmd for e in events[-2:]] == [
        shlex.join(["sh", "-c", "kill -s KILL $$"]),
        "echo hello",
    ]
    assert events[-1].output == "hello\n"


async def test_cancellation_kills_the_remote_group(no_remote_leftovers: OpenSSHServer) -> None:
    config = no_remote_leftovers.sandbox_config()
    marker = f"300.{secrets.randbelow(10**8):08d}"
    async with corral.task("t", sandbox=("ssh", config)) as task, task.sample(1):
        env = sandbox()
        with anyio.move_on_after(0.5) as scope:
            await env.exec(["sh", "-c", f"sleep {marker} & sleep {marker}; wait"])
        assert scope.cancelled_caught
        # The group is gone before exec returned: nothing to find now.
        # The marker goes in a file, so the search does not find itself.
        await env.write_file("marker", marker)
        ps = await env.exec(["sh", "-c", "grep -lsF -f marker /proc/[0-9]*/cmdline; true"])
        assert ps.stdout.split() == []


async def test_time_limit_cleans_up_the_sample(no_remote_leftovers: OpenSSHServer) -> None:
    config = no_remote_leftovers.sandbox_config()
    directories: list[str] = []

    async def limited(task: corral.Task) -> None:
        async with task.sample(1, time_limit=0.5):
            env = sandbox()
            directories.append((await env.exec(["pwd"])).stdout.strip())
            # A daemon that leaves the command's group: found by its tag at cleanup.
            await env.exec(["sh", "-c", "setsid sleep 300 >/dev/null 2>&1 < /dev/null &"])
            await env.exec(["sleep", "30"])

    async with corral.task("t", sandbox=("ssh", config)) as task:
        with pytest.raises(TimeoutError, match="time limit"):
            await limited(task)
        assert directories
        assert directories[0].startswith("/tmp/corral-sandbox-")
        async with task.sample(2):
            probe = await sandbox().exec(["test", "-e", directories[0]])
            assert probe.returncode == 1


async def test_connection_command(no_remote_leftovers: OpenSSHServer) -> None:
    server = no_remote_leftovers
    async with corral.task("t", sandbox=("ssh", server.sandbox_config())) as task, task.sample(1):
        env = sandbox()
        connection = await env.connection()
        directory = (await env.exec(["pwd"])).stdout.strip()
    argv = shlex.split(connection.command)
    assert connection.type == "ssh"
    assert argv[:4] == ["ssh", "-t", "-p", str(server.port)]
    assert f"{server.username}@{server.host}" in argv
    assert f"UserKnownHostsFile={server.known_hosts}" in argv
    assert directory in argv[-1]
    with pytest.raises(ConnectionError):
        await env.connection()
    with pytest.raises(SandboxUnavailableError, match="cleaned up"):
        await env.exec(["true"])


async def test_channels_per_connection_stay_under_max_sessions(
    no_remote_leftovers: OpenSSHServer, remote_fifo: Fifo, remote_gate: Fifo
) -> None:
    # The server allows 10 sessions per connection; 25 execs at once need 3 connections.
    config = no_remote_leftovers.sandbox_config()
    async with corral.task("t", sandbox=("ssh", config)) as task, task.sample(1):
        open_sessions: list[list[int]] = []

        async def when_all_run() -> None:
            # Every command is running (and holds its channel): look at the pool.
            # Under trio the pools live on the SSH loop's thread: ints are safe to read.
            open_sessions.append(
                [
                    link.sessions
                    for sets in list(_pool._sets.values())
                    for hosts in list(sets.values())
                    for pool in hosts.pools
                    for link in pool._links
                ]
            )

        results = await _run_at_once(25, remote_fifo, remote_gate, when_all_run)
        assert sorted(results) == sorted(f"{i}\n" for i in range(25))
        ((*sessions,),) = open_sessions
        assert sum(sessions) == 25
        assert len(sessions) >= 3
        assert max(sessions) <= 10


async def test_a_lower_server_limit_is_learnt(
    no_remote_leftovers: OpenSSHServer, remote_fifo: Fifo, remote_gate: Fifo
) -> None:
    # Configured for 25 sessions per connection, the server refuses the 11th:
    # the pool lowers that connection's capacity and opens another.
    config = no_remote_leftovers.sandbox_config()
    config["hosts"] = [
        {
            "host": "127.0.0.1",
            "port": no_remote_leftovers.port,
            "username": no_remote_leftovers.username,
            "max_sessions": 25,
        }
    ]
    async with corral.task("t", sandbox=("ssh", config)) as task, task.sample(1):
        results = await _run_at_once(20, remote_fifo, remote_gate)
    assert sorted(results) == sorted(f"{i}\n" for i in range(20))


async def _run_at_once(
    count: int,
    ready: Fifo,
    gate: Fifo,
    while_running: Callable[[], Awaitable[None]] | None = None,
) -> list[str]:
    """Run *count* execs that are all running at once (a barrier); their outputs.

    Each command signals *ready*, then waits on *gate* until all of them run.
    """
    env = sandbox()
    results: list[str] = []
    script = f"{ready.shell_ready()}; read line < '{gate.path}'; echo "

    async def run(i: int) -> None:
        results.append((await env.exec(["sh", "-c", f"{script}{i}"])).stdout)

    async with anyio.create_task_group() as tg:
        for i in range(count):
            tg.start_soon(run, i)
        await ready.wait(count)
        if while_running is not None:
            await while_running()
        gate.release(count)
    return results


async def test_samples_spread_over_hosts_by_load(no_remote_leftovers: OpenSSHServer) -> None:
    server = no_remote_leftovers
    # The same server under two names: 127.0.0.1 and localhost.
    config = server.sandbox_config(
        hosts=[
            {"host": "127.0.0.1", "port": server.port, "username": server.username},
            {"host": "localhost", "port": server.port, "username": server.username},
        ],
        known_hosts="ignore",
    )
    hosts: list[str] = []
    async with corral.task("t", sandbox=("ssh", config)) as task:

        async def one(i: int, ready: anyio.Event, release: anyio.Event) -> None:
            async with task.sample(i):
                env = sandbox()
                assert isinstance(env, SandboxEnvironmentProxy)
                assert isinstance(env.inner, SSHSandboxEnvironment)
                hosts.append(env.inner.host)
                ready.set()
                await release.wait()

        release = anyio.Event()
        async with anyio.create_task_group() as tg:
            for i in range(4):
                ready = anyio.Event()
                tg.start_soon(one, i, ready, release)
                await ready.wait()
            release.set()
    assert sorted(hosts) == sorted(
        [f"{server.username}@127.0.0.1:{server.port}"] * 2
        + [f"{server.username}@localhost:{server.port}"] * 2
    )


async def test_cancellation_at_any_moment_leaves_nothing(
    no_remote_leftovers: OpenSSHServer,
) -> None:
    # Cancelled while the channel opens, while the script starts, while the command runs.
    config = no_remote_leftovers.sandbox_config()
    marker = f"300.{secrets.randbelow(10**8):08d}"
    async with corral.task("t", sandbox=("ssh", config)) as task, task.sample(1):
        env = sandbox()
        await env.write_file("marker", marker)
        for delay in (0, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.03):
            with anyio.move_on_after(delay):
                await env.exec(["sleep", marker])
            ps = await env.exec(["sh", "-c", "grep -lsF -f marker /proc/[0-9]*/cmdline; true"])
            assert ps.stdout.split() == [], f"left running after a cancel at {delay} s"


async def test_cancelled_sample_init_leaves_no_directory(
    no_remote_leftovers: OpenSSHServer,
) -> None:
    server = no_remote_leftovers
    config = server.sandbox_config()
    uid = pwd.getpwnam(server.username).pw_uid

    def directories() -> set[str]:
        found = set()
        for entry in os.scandir("/tmp"):
            if not entry.name.startswith("corral-sandbox-"):
                continue
            try:  # another test session's directories come and go meanwhile
                owner = entry.stat().st_uid
            except FileNotFoundError:
                continue
            if owner == uid:
                found.add(entry.name)
        return found

    before = directories()
    # The task keeps the connection open, so the cancels land while mktemp runs.
    await SSHSandboxEnvironment.task_init("t", config)
    try:
        warm = await SSHSandboxEnvironment.sample_init("t", config, {})
        await SSHSandboxEnvironment.sample_cleanup("t", config, warm, False)
        for step in range(40):
            delay = step * 0.0003
            environments = None
            with anyio.move_on_after(delay):
                environments = await SSHSandboxEnvironment.sample_init("t", config, {})
            if environments is not None:
                await SSHSandboxEnvironment.sample_cleanup("t", config, environments, False)
            assert directories() == before, f"a directory was left by a cancel at {delay} s"
    finally:
        await SSHSandboxEnvironment.task_cleanup("t", config, True)


async def test_cancellation_kills_a_term_ignoring_command_run_as_another_user(
    no_remote_leftovers: OpenSSHServer, remote_fifo: Fifo
) -> None:
    server = no_remote_leftovers
    marker = f"300.{secrets.randbelow(10**8):08d}"
    command = f"trap '' TERM; {remote_fifo.shell_ready()}; sleep {marker}; sleep {marker}"
    async with (
        corral.task("t", sandbox=("ssh", server.sandbox_config()), kill_grace=0.2) as task,
        task.sample(1),
    ):
        async with anyio.create_task_group() as tg:
            tg.start_soon(
                lambda: sandbox().exec(["sh", "-c", command], user=server.other_username, cwd="/")
            )
            await remote_fifo.wait()
            tg.cancel_scope.cancel()
        # sudo passed SIGTERM on, the command ignored it; SIGKILL went through sudo too.
        left = [
            pid for pid in server.processes_of(server.other_username) if marker in _cmdline_of(pid)
        ]
        assert left == []


def _cmdline_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""


async def test_a_nul_in_one_samples_command_does_not_touch_another_sample(
    no_remote_leftovers: OpenSSHServer, remote_fifo: Fifo, remote_gate: Fifo
) -> None:
    # sshd drops the whole connection on a NUL in an exec request: it must never get one.
    config = no_remote_leftovers.sandbox_config()
    results: list[str] = []
    async with corral.task("t", sandbox=("ssh", config)) as task:

        async def innocent() -> None:
            async with task.sample("innocent"):
                command = f"{remote_fifo.shell_ready()}; read line < '{remote_gate.path}'; echo ok"
                results.append((await sandbox().exec(["sh", "-c", command])).stdout)

        async def hostile() -> None:
            async with task.sample("hostile"):
                await remote_fifo.wait()  # the innocent command runs, on the pooled connection
                for bad in (["echo", "a\0b"], ["ec\0ho"]):
                    with pytest.raises(ValueError, match="NUL"):
                        await sandbox().exec(bad)
                with pytest.raises(ValueError, match="NUL"):
                    await sandbox().exec(["true"], cwd="/tmp\0x")
                with pytest.raises(ValueError, match="NUL"):
                    await sandbox().write_file("a\0b", "x")
                assert (await sandbox().exec(["echo", "me too"])).stdout == "me too\n"
                remote_gate.release()

        task.start_soon(innocent)
        task.start_soon(hostile)
    assert results == ["ok\n"]


async def test_an_endless_remote_writer_is_stopped_once_past_the_output_limit(
    no_remote_leftovers: OpenSSHServer,
) -> None:
    from corral.util import OutputLimitExceededError, override_sandbox_output_limit

    marker = f"yes-{secrets.token_hex(6)}"
    config = no_remote_leftovers.sandbox_config()
    with override_sandbox_output_limit(64 * 1024, "exec"):
        async with corral.task("t", sandbox=("ssh", config)) as task, task.sample(1):
            with anyio.fail_after(30), pytest.raises(OutputLimitExceededError) as info:
                await sandbox().exec(["sh", "-c", f"exec yes {marker}"])
            # The command's group was killed before exec returned, and the sandbox works on.
            server = no_remote_leftovers
            assert [p for p in server.processes_of() if marker in _cmdline_of(p)] == []
            assert (await sandbox().exec(["echo", "on"])).stdout == "on\n"
    kept = info.value.truncated_output
    assert kept is not None
    assert 0 < len(kept) <= 64 * 1024


async def test_a_dead_sftp_session_is_replaced_for_every_sample_on_the_host(
    no_remote_leftovers: OpenSSHServer,
) -> None:
    from corral._core._procfs import cmdline, pids
    from tests.support.processes import kill_and_wait

    server = no_remote_leftovers
    async with corral.task("t", sandbox=("ssh", server.sandbox_config())) as task:
        async with task.sample("first"):
            await sandbox().write_file("a.txt", "one")  # starts the host's SFTP session
            sftp = [p for p in pids() if f"{server.username}@internal-sftp" in (cmdline(p) or "")]
            assert len(sftp) == 1
            assert kill_and_wait(sftp) == []  # its session ends; the connection lives on
            assert await sandbox().read_file("a.txt") == "one"
        async with task.sample("second"):
            await sandbox().write_file("b.txt", "two")
            assert await sandbox().read_file("b.txt") == "two"


async def test_a_remote_fifo_is_refused_without_holding_the_sftp_session(
    no_remote_leftovers: OpenSSHServer,
) -> None:
    async with (
        corral.task("t", sandbox=("ssh", no_remote_leftovers.sandbox_config())) as task,
        task.sample(1),
    ):
        assert (await sandbox().exec(["mkfifo", "answer.txt"])).success
        with anyio.fail_after(10), pytest.raises(OSError, match="this is a FIFO") as info:
            await sandbox().read_file("answer.txt")
        assert info.value.filename == "answer.txt"
        with anyio.fail_after(10), pytest.raises(OSError, match="this is a FIFO") as info:
            await sandbox().write_file("answer.txt", "42")
        assert info.value.filename == "answer.txt"
        await sandbox().write_file("fine.txt", "ok")  # the session is free
        assert await sandbox().read_file("fine.txt") == "ok"


async def test_a_file_operation_cancelled_unanswered_frees_the_sftp_session_for_others(
    no_remote_leftovers: OpenSSHServer,
) -> None:
    # The server's SFTP process stops answering (as one stuck opening a FIFO
    # does): a sample whose read is cancelled takes the session down with it,
    # and another sample's read gets a new session instead of queueing forever.
    from corral._core._procfs import cmdline, pids

    server = no_remote_leftovers
    frozen: list[int] = []
    try:
        async with corral.task("t", sandbox=("ssh", server.sandbox_config())) as task:
            async with task.sample("stuck"):
                await sandbox().write_file("a.txt", "one")  # starts the host's SFTP session
                frozen = [
                    p for p in pids() if f"{server.username}@internal-sftp" in (cmdline(p) or "")
                ]
                for pid in frozen:
                    os.kill(pid, signal.SIGSTOP)
                with anyio.move_on_after(0.5) as scope:
                    await sandbox().read_file("a.txt")
                assert scope.cancelled_caught
            async with task.sample("innocent"):
                with anyio.fail_after(10):
                    await sandbox().write_file("b.txt", "two")
                    assert await sandbox().read_file("b.txt") == "two"
    finally:
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                os.kill(pid, signal.SIGCONT)
    assert len(frozen) == 1


async def test_an_argument_at_the_kernel_limit_runs_and_one_over_is_refused(
    no_remote_leftovers: OpenSSHServer,
) -> None:
    # Over SSH a 1 MiB argument was exit status 126 (E2BIG from the remote exec).
    from corral._core._checks import MAX_ARGUMENT

    sizes = ["sh", "-c", 'printf %s "${#1}"', "sh"]
    async with (
        corral.task("t", sandbox=("ssh", no_remote_leftovers.sandbox_config())) as task,
        task.sample(1),
    ):
        assert (await sandbox().exec([*sizes, "a" * MAX_ARGUMENT])).stdout == str(MAX_ARGUMENT)
        with pytest.raises(ValueError, match=r"cmd\[4\] is 1,048,576 bytes; .* 131,071 bytes"):
            await sandbox().exec([*sizes, "a" * 2**20])
        assert (await sandbox().exec(["echo", "still"])).stdout == "still\n"
