"""Issue 12: the ssh sandbox puts no env value on a command line, nor in a log record.

The values were in the exec request's command (``export K=V; exec cmd``,
which asyncssh logs), hence in the login shell's ``/proc/PID/cmdline`` and in
that of the watcher it forks, for the command's whole life; with ``user=``
also in sudo's (``sudo -n -u USER -- env K=V cmd``). They now travel on the
channel ahead of the input. The server is on loopback, so its processes are
in this machine's ``/proc``: while a command runs (held on a FIFO, no
sleeps), every command line on the machine is read.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator

import anyio
import asyncssh
import pytest

import corral
from corral.util import ExecResult, sandbox
from tests.support.cmdlines import command_lines_holding, secret_value
from tests.support.fifo import Fifo
from tests.support.sshd import OpenSSHServer

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["login", "other"])
def user(request: pytest.FixtureRequest, sshd: OpenSSHServer) -> str | None:
    """``None`` (the login user), or the user the login user may sudo to."""
    return None if request.param == "login" else sshd.other_username


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every log record at DEBUG, asyncssh's at its most verbose short of packet dumps."""
    asyncssh.set_debug_level(2)
    try:
        with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="asyncssh"):
            yield caplog
    finally:
        asyncssh.set_debug_level(1)


async def test_env_values_are_on_no_command_line_and_in_no_log(
    no_remote_leftovers: OpenSSHServer,
    user: str | None,
    remote_fifo: Fifo,
    remote_gate: Fifo,
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    server = no_remote_leftovers
    value, token = secret_value()
    # ``n`` and ``e`` are the names the reading shell uses for itself.
    env = {"SECRET": value, "n": "N", "e": "E", "PATH": "/usr/bin:/bin"}
    script = (
        f"{remote_fifo.shell_ready()}; read _ < '{remote_gate.path}'; "
        "printenv SECRET n e; id -un; printenv CORRAL_SSH_SANDBOX >/dev/null"
    )
    results: list[ExecResult[str]] = []

    async def run() -> None:
        results.append(await sandbox().exec(["sh", "-c", script], env=env, user=user, cwd="/"))

    async with (
        corral.task("t", sandbox=("ssh", server.sandbox_config())) as task,
        task.sample(1),
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(run)
        await remote_fifo.wait()
        seen = command_lines_holding(token)
        remote_gate.release()
    assert seen == {}
    name = server.username if user is None else user
    assert results == [ExecResult(True, 0, f"{value}\nN\nE\n{name}\n", "")]
    messages = [record.getMessage() for record in debug_logs.records]
    assert any("Command:" in message for message in messages)  # asyncssh did log the exec
    assert [message for message in messages if token in message] == []


async def test_input_follows_the_env_and_no_input_is_dev_null(
    no_remote_leftovers: OpenSSHServer, user: str | None
) -> None:
    value, _ = secret_value()
    text = "first line\n-second 'line'\nno newline at the end"
    config = no_remote_leftovers.sandbox_config()
    async with corral.task("t", sandbox=("ssh", config)) as task, task.sample(1):
        fed = await sandbox().exec(["cat"], input=text, env={"SECRET": value}, user=user, cwd="/")
        assert fed == ExecResult(True, 0, text, "")
        # No input: the command reads /dev/null (a cat returns at once), as without env.
        script = "readlink /proc/$$/fd/0; cat; printenv SECRET"
        bare = await sandbox().exec(["sh", "-c", script], env={"SECRET": value}, user=user, cwd="/")
        assert bare == ExecResult(True, 0, f"/dev/null\n{value}\n", "")
        # Empty input: the channel, at EOF once the variables are read.
        empty = await sandbox().exec(
            ["sh", "-c", "cat; printenv SECRET"], input="", env={"SECRET": value}, user=user
        )
        assert empty == ExecResult(True, 0, f"{value}\n", "")


async def test_empty_and_large_env(
    no_remote_leftovers: OpenSSHServer, user: str | None, remote_fifo: Fifo, remote_gate: Fifo
) -> None:
    value, token = secret_value()
    big = value + "x" * (100 * 1024)
    env = {f"V{i}": f"value {i} {value}" for i in range(200)} | {"BIG": big}
    script = (
        f"{remote_fifo.shell_ready()}; read _ < '{remote_gate.path}'; "
        "printenv BIG | wc -c; printenv V0 V199"
    )
    results: list[ExecResult[str]] = []
    config = no_remote_leftovers.sandbox_config()
    async with corral.task("t", sandbox=("ssh", config)) as task, task.sample(1):
        empty = await sandbox().exec(["sh", "-c", "printenv CORRAL_SSH_SANDBOX"], env={}, user=user)
        assert empty.success
        assert empty.stdout.strip()
        async with anyio.create_task_group() as tg:

            async def run() -> None:
                results.append(
                    await sandbox().exec(["sh", "-c", script], env=env, user=user, cwd="/")
                )

            tg.start_soon(run)
            await remote_fifo.wait()
            seen = command_lines_holding(token)
            remote_gate.release()
    assert seen == {}
    size = len(big.encode()) + 1
    assert results == [ExecResult(True, 0, f"{size}\nvalue 0 {value}\nvalue 199 {value}\n", "")]


async def test_cancellation_still_kills_a_command_given_env(
    no_remote_leftovers: OpenSSHServer, user: str | None, remote_fifo: Fifo
) -> None:
    """The shell that reads the variables ``exec``\\ s the command: the kill still finds it."""
    server = no_remote_leftovers
    marker = f"300.{secrets.randbelow(10**8):08d}"
    command = f"{remote_fifo.shell_ready()}; sleep {marker}"
    async with corral.task("t", sandbox=("ssh", server.sandbox_config())) as task, task.sample(1):
        async with anyio.create_task_group() as tg:
            tg.start_soon(
                lambda: sandbox().exec(["sh", "-c", command], env={"A": "1"}, user=user, cwd="/")
            )
            await remote_fifo.wait()
            tg.cancel_scope.cancel()
        assert command_lines_holding(marker) == {}
