"""The ssh sandbox when things go wrong: servers killed, hosts down or silent, bad keys."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Iterator

import anyio
import anyio.to_thread
import pytest

import corral
from corral.sandboxes import HostRefusedError
from corral.sandboxes._ssh._environment import SSHSandboxEnvironment
from corral.util import SandboxUnavailableError, sandbox
from tests.support.fifo import Fifo
from tests.support.processes import processes_matching, unique_sleep
from tests.support.sshd import OpenSSHServer

pytestmark = pytest.mark.anyio


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel's backlog) and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


def closed_port() -> int:
    """A port nothing listens on (connections are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_server_killed_mid_exec_then_back(
    fresh_sshd: OpenSSHServer, remote_fifo: Fifo
) -> None:
    server = fresh_sshd
    async with (
        corral.task("t", sandbox=("ssh", server.sandbox_config())) as task,
        task.sample(1),
    ):
        env = sandbox()
        await env.write_file("kept.txt", "still here")
        failure: list[BaseException] = []
        elapsed: list[float] = []

        async def long_exec() -> None:
            with pytest.raises(SandboxUnavailableError) as info:
                await env.exec(["sh", "-c", f"{remote_fifo.shell_ready()}; exec sleep 30"])
            elapsed.append(time.monotonic() - stopped[0])
            failure.append(info.value)

        stopped = [0.0]
        async with anyio.create_task_group() as tg:
            tg.start_soon(long_exec)
            await remote_fifo.wait()  # the command runs on the server
            stopped[0] = time.monotonic()
            # The connection goes first: stop() alone may kill the command before
            # sshd, and sshd would then report its exit cleanly.
            await anyio.to_thread.run_sync(server.kill_sessions)
            await anyio.to_thread.run_sync(server.stop)
        assert f"127.0.0.1:{server.port}" in str(failure[0])
        assert "lost the connection" in str(failure[0])
        assert elapsed[0] < 5.0

        # Back on the same port: the next call reconnects, the files are there.
        await anyio.to_thread.run_sync(server.start)
        assert await env.read_file("kept.txt") == "still here"
        assert (await env.exec(["echo", "back"])).stdout == "back\n"


async def test_dropped_connections_are_reopened_on_next_use(
    fresh_sshd: OpenSSHServer,
) -> None:
    server = fresh_sshd
    async with (
        corral.task("t", sandbox=("ssh", server.sandbox_config())) as task,
        task.sample(1),
    ):
        env = sandbox()
        assert (await env.exec(["echo", "one"])).stdout == "one\n"
        await anyio.to_thread.run_sync(server.kill_sessions)
        assert (await env.exec(["echo", "two"])).stdout == "two\n"
        await anyio.to_thread.run_sync(server.kill_sessions)
        await env.write_file("f", "x")
        assert await env.read_file("f") == "x"


@pytest.mark.parametrize("opening", ["a channel", "SFTP"])
async def test_connections_found_gone_before_asyncssh_noticed_are_passed_over(
    sshd: OpenSSHServer, opening: str
) -> None:
    """Regression: under load, the first call after the server dropped its connections
    could land on one whose socket was gone while asyncssh's cleanup had not run yet
    (``is_closed()`` still false), and fail instead of reconnecting."""
    from corral.sandboxes._ssh._bridge import run_on_ssh_loop

    async with (
        corral.task("t", sandbox=("ssh", sshd.sandbox_config())) as task,
        task.sample(1),
    ):
        env = sandbox()
        assert (await env.exec(["echo", "one"])).stdout == "one\n"
        await env.write_file("f", "x")  # an SFTP client, on a connection of its own or not
        pool = env.inner._remote.pool  # type: ignore[attr-defined]

        async def drop_then_use() -> str:
            links = list(pool._links)
            if pool._sftp is not None:  # no channel left open: nothing looks refused
                pool.release(pool._sftp[0])
                pool._sftp = None
            for link in links:
                # What asyncssh does when the socket closes: the transport is gone
                # at once, the cleanup (which makes is_closed() true) comes later.
                link.conn.connection_lost(None)
                assert not link.conn.is_closed()
            if opening == "SFTP":
                client = await pool.sftp()
                return str(await client.realpath("."))
            return str(await pool.run("echo two", "test"))

        used = await run_on_ssh_loop(drop_then_use)
        if opening == "SFTP":
            assert used.startswith("/")  # the remote home directory, over a new connection
        else:
            assert used == "two\n"
        assert (await env.exec(["echo", "three"])).stdout == "three\n"
        assert await env.read_file("f") == "x"


async def test_silent_host_connect_timeout(sshd: OpenSSHServer, silent_port: int) -> None:
    config = sshd.sandbox_config(
        hosts=[{"host": "127.0.0.1", "port": silent_port, "username": sshd.username}],
        connect_timeout=0.5,
    )
    started = time.monotonic()
    with pytest.raises(SandboxUnavailableError) as info:
        await SSHSandboxEnvironment.sample_init("t", config, {})
    assert time.monotonic() - started < 3.0
    assert f"127.0.0.1:{silent_port}" in str(info.value)
    assert "connect_timeout=0.5" in str(info.value)


async def test_wrong_host_key_is_refused(sshd: OpenSSHServer) -> None:
    config = sshd.sandbox_config(known_hosts=str(sshd.wrong_known_hosts))
    with pytest.raises(HostRefusedError) as info:
        await SSHSandboxEnvironment.sample_init("t", config, {})
    message = str(info.value)
    assert f"127.0.0.1:{sshd.port}" in message
    assert str(sshd.wrong_known_hosts) in message
    assert "not trusted" in message


async def test_wrong_key_names_the_user(sshd: OpenSSHServer) -> None:
    config = sshd.sandbox_config(client_keys=[str(sshd.unauthorized_key)])
    with pytest.raises(HostRefusedError) as info:
        await SSHSandboxEnvironment.sample_init("t", config, {})
    assert f"user {sshd.username!r}" in str(info.value)
    assert "authentication failed" in str(info.value)


async def test_two_hosts_one_down(no_remote_leftovers: OpenSSHServer) -> None:
    server = no_remote_leftovers
    down = closed_port()
    config = server.sandbox_config(
        hosts=[
            {"host": "127.0.0.1", "port": down, "username": server.username},
            {"host": "127.0.0.1", "port": server.port, "username": server.username},
        ]
    )
    used: list[str] = []
    async with corral.task("t", sandbox=("ssh", config)) as task:
        for i in range(3):
            async with task.sample(i):
                used.append((await sandbox().exec(["echo", "ok"])).stdout)
    assert used == ["ok\n"] * 3


async def test_every_host_down_names_each(sshd: OpenSSHServer) -> None:
    ports = [closed_port(), closed_port()]
    config = sshd.sandbox_config(
        hosts=[{"host": "127.0.0.1", "port": port, "username": sshd.username} for port in ports]
    )
    with pytest.raises(SandboxUnavailableError) as info:
        await SSHSandboxEnvironment.sample_init("t", config, {})
    for port in ports:
        assert f"127.0.0.1:{port}" in str(info.value)


async def test_a_silent_connection_is_found_by_keepalive(
    fresh_sshd: OpenSSHServer, no_remote_leftovers: OpenSSHServer, remote_fifo: Fifo
) -> None:
    # The server's session processes freeze mid-exec: TCP stays up, nothing answers.
    server = fresh_sshd
    config = server.sandbox_config(keepalive_interval=0.2)
    async with (
        corral.task("t", sandbox=("ssh", config)) as task,
        task.sample(1),
    ):
        env = sandbox()
        failure: list[BaseException] = []
        elapsed: list[float] = []

        async def long_exec() -> None:
            with pytest.raises(SandboxUnavailableError) as info:
                await env.exec(["sh", "-c", f"{remote_fifo.shell_ready()}; exec sleep 30"])
            elapsed.append(time.monotonic() - frozen_at[0])
            failure.append(info.value)

        frozen_at = [0.0]
        frozen = []
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(long_exec)
                await remote_fifo.wait()  # the command runs on the server
                frozen = server.session_processes()
                frozen_at[0] = time.monotonic()
                for pid in frozen:
                    os.kill(pid, signal.SIGSTOP)
        finally:
            for pid in frozen:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                    os.kill(pid, signal.SIGCONT)
        assert frozen
        assert f"127.0.0.1:{server.port}" in str(failure[0])
        # Three missed keepalives of 0.2 s, then the connection is closed.
        assert elapsed[0] < 3.0
        # A call whose channel cannot open on the dead connection is retried on a new one.
        assert (await env.exec(["echo", "again"])).stdout == "again\n"


async def test_a_time_limit_ends_the_sample_on_a_frozen_connection(
    fresh_sshd: OpenSSHServer, remote_fifo: Fifo
) -> None:
    # The server's session processes freeze mid-exec (TCP up, nothing answers)
    # and the sample's time limit passes: the kill and the cleanup go over a
    # new connection instead of waiting for keepalives on the frozen one
    # (40 s here before), and the command is gone once the sample has ended.
    server = fresh_sshd
    marker = unique_sleep()
    frozen: list[int] = []
    ended: list[float] = []
    left: list[int] = []

    async def run_sample(task: corral.Task) -> None:
        command = ["sh", "-c", f"{remote_fifo.shell_ready()}; exec sleep {marker}"]
        with pytest.raises(TimeoutError, match="time limit of 3 seconds"):
            async with task.sample(1, time_limit=3):
                await sandbox().exec(command)
        ended.append(time.monotonic())
        left.extend(processes_matching(marker))

    try:
        async with (
            corral.task("t", sandbox=("ssh", server.sandbox_config())) as task,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(run_sample, task)
            await remote_fifo.wait()  # the command runs on the server
            frozen = server.session_processes()
            frozen_at = time.monotonic()
            for pid in frozen:
                os.kill(pid, signal.SIGSTOP)
    finally:
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                os.kill(pid, signal.SIGCONT)
    assert frozen
    assert left == []
    # The limit passes about 3 s after the freeze; keepalives alone take 30 s.
    assert ended[0] - frozen_at < 15.0
