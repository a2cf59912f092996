"""The ssh provider's side of inspect's contract: concurrency=, connection(user=), config model."""

from __future__ import annotations

import shlex
from pathlib import Path

import anyio
import pytest

import corral
from corral.sandboxes import SSHSandboxConfig
from corral.sandboxes._ssh._environment import SSHSandboxEnvironment
from corral.util import SandboxEnvironmentSpec, sandbox, subprocess
from tests.conftest import Fifo
from tests.support.sshd import OpenSSHServer

pytestmark = pytest.mark.anyio


async def test_exec_runs_with_or_without_concurrency_while_the_local_slots_are_taken(
    no_remote_leftovers: OpenSSHServer, fifo: Fifo, tmp_path: Path
) -> None:
    """A remote command takes no slot of max_subprocesses, concurrency=True or False."""
    server = no_remote_leftovers
    release = Fifo(tmp_path / "release")
    try:
        async with (
            corral.task("t", sandbox=("ssh", server.sandbox_config()), max_subprocesses=1) as task,
            task.sample(1),
        ):
            env = sandbox()
            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg:
                    # The only local slot is held by a local command until released.
                    tg.start_soon(
                        subprocess, ["sh", "-c", f"{fifo.shell_ready()}; read l < '{release.path}'"]
                    )
                    await fifo.wait()
                    assert task.statistics().subprocesses_running == 1
                    free = await env.exec(["echo", "free"], concurrency=False)
                    normal = await env.exec(["echo", "normal"], concurrency=True)
                    assert (free.stdout, normal.stdout) == ("free\n", "normal\n")
                    release.release()
            direct = await env.as_type(SSHSandboxEnvironment).exec(["echo", "d"], concurrency=False)
            assert direct.stdout == "d\n"
    finally:
        release.close()


async def test_connection_as_another_user_runs_sudo_on_the_host(
    no_remote_leftovers: OpenSSHServer,
) -> None:
    server = no_remote_leftovers
    other = server.other_username
    async with corral.task("t", sandbox=("ssh", server.sandbox_config())) as task, task.sample(1):
        env = sandbox()
        directory = env.as_type(SSHSandboxEnvironment).directory
        plain = await env.connection()
        assert await env.connection(user=server.username) == plain  # the login user: no sudo
        assert "sudo" not in shlex.split(plain.command)[-1]
        connection = await env.connection(user=other)
        argv = shlex.split(connection.command)
        assert f"{server.username}@{server.host}" in argv
        assert argv[-1].startswith(f"cd {shlex.quote(directory)} && exec sudo -u {other} -- ")
        # The command works: run it, with a script for the shell instead of a terminal.
        with anyio.fail_after(60):
            result = await subprocess(["sh", "-c", connection.command], input="id -un; pwd; exit\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [other, directory]


async def test_a_dict_config_becomes_the_ssh_config_model(sshd: OpenSSHServer) -> None:
    spec = SandboxEnvironmentSpec("ssh", sshd.sandbox_config())
    assert isinstance(spec.config, SSHSandboxConfig)
    again = SandboxEnvironmentSpec.model_validate_json(spec.model_dump_json())
    assert isinstance(again.config, SSHSandboxConfig)
    assert again == spec
    assert SSHSandboxEnvironment.config_deserialize(sshd.sandbox_config()) == spec.config
    with pytest.raises(ValueError, match="hosts"):
        SSHSandboxEnvironment.config_deserialize({"hosts": []})
