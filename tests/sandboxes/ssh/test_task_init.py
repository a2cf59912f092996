"""Configuration errors surface once, when the task is entered, before any sample starts."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import anyio
import pytest

import corral
from corral.sandboxes import HostRefusedError
from corral.util import SandboxUnavailableError, sandbox
from tests.support.sshd import OpenSSHServer

from .test_faults import closed_port

pytestmark = pytest.mark.anyio


async def test_a_wrong_host_key_fails_the_task_once_on_entry(sshd: OpenSSHServer) -> None:
    """Regression: the error reached the user once per sample, inside an ExceptionGroup."""
    config = sshd.sandbox_config(known_hosts=str(sshd.wrong_known_hosts))
    started: list[int] = []
    with pytest.raises(HostRefusedError) as info:  # noqa: PT012  (the error itself, not a group)
        async with corral.task("t", sandbox=("ssh", config)) as task:
            for n in range(5):
                async with task.sample(n):
                    started.append(n)
    assert started == []
    assert "not trusted" in str(info.value)
    assert f"127.0.0.1:{sshd.port}" in str(info.value)


async def test_a_refused_key_fails_the_task_on_entry(sshd: OpenSSHServer) -> None:
    config = sshd.sandbox_config(client_keys=[str(sshd.unauthorized_key)])
    with pytest.raises(HostRefusedError, match=f"user {sshd.username!r}"):
        async with corral.task("t", sandbox=("ssh", config)):
            pytest.fail("the task body ran")


async def test_an_invalid_configuration_fails_the_task_on_entry() -> None:
    with pytest.raises(ValueError, match=r"hosts\.0\.port"):
        async with corral.task("t", sandbox=("ssh", {"hosts": [{"host": "h", "port": 0}]})):
            pytest.fail("the task body ran")


async def test_every_host_down_fails_on_entry_naming_each(sshd: OpenSSHServer) -> None:
    ports = [closed_port(), closed_port()]
    config = sshd.sandbox_config(
        hosts=[{"host": "127.0.0.1", "port": port, "username": sshd.username} for port in ports]
    )
    with pytest.raises(SandboxUnavailableError) as info:
        async with corral.task("t", sandbox=("ssh", config)):
            pytest.fail("the task body ran")
    for port in ports:
        assert f"127.0.0.1:{port}" in str(info.value)


async def test_a_host_down_is_logged_and_passed_over(
    no_remote_leftovers: OpenSSHServer, caplog: pytest.LogCaptureFixture
) -> None:
    server = no_remote_leftovers
    down = closed_port()
    config = server.sandbox_config(
        hosts=[
            {"host": "127.0.0.1", "port": down, "username": server.username},
            {"host": "127.0.0.1", "port": server.port, "username": server.username},
        ]
    )
    with caplog.at_level(logging.WARNING, logger="corral.sandbox"):
        async with corral.task("t", sandbox=("ssh", config)) as task, task.sample(1):
            assert (await sandbox().exec(["echo", "ok"])).stdout == "ok\n"
    assert any(f"127.0.0.1:{down} is down" in r.getMessage() for r in caplog.records)


@pytest.fixture
def silent_listeners() -> Iterator[list[socket.socket]]:
    """Three ports that accept TCP connections (in the kernel's backlog) and never answer."""
    listeners = []
    try:
        for _ in range(3):
            listener = socket.socket()
            listener.bind(("127.0.0.1", 0))
            listener.listen(4)
            listeners.append(listener)
        yield listeners
    finally:
        for listener in listeners:
            listener.close()


async def test_task_init_connects_to_every_host_at_once(
    sshd: OpenSSHServer, silent_listeners: list[socket.socket]
) -> None:
    """Every host is being connected to while the first is still waiting for an answer.

    One after another, the second host would be tried only after the first's
    connect_timeout (60 s here); together, all three connect at once.
    """
    config = sshd.sandbox_config(
        hosts=[
            {"host": "127.0.0.1", "port": s.getsockname()[1], "username": sshd.username}
            for s in silent_listeners
        ],
        connect_timeout=60,
    )

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:

            async def enter() -> None:
                async with corral.task("t", sandbox=("ssh", config)):
                    pytest.fail("the silent hosts answered")

            tg.start_soon(enter)
            for listener in silent_listeners:  # readable: a connection waits to be accepted
                await anyio.wait_readable(listener.fileno())
            tg.cancel_scope.cancel()
