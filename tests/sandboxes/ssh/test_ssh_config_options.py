"""Options of the user's ``ssh_config`` reach the connection unless corral's config sets them.

Against the real test sshd: ``HostName``, ``Port``, ``User`` and
``IdentityFile`` from an ``ssh_config`` apply to a host written as an alias
(``hosts=["box"]``), and what corral's configuration says explicitly wins.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from corral.sandboxes import HostRefusedError
from corral.sandboxes._ssh._environment import SSHSandboxEnvironment
from corral.util import SandboxUnavailableError
from tests.support.sshd import OpenSSHServer

from .test_faults import closed_port

pytestmark = pytest.mark.anyio


async def _whoami(config: dict[str, object]) -> str:
    """Place a sample with *config*, run ``id -un`` there, clean up; its output."""
    envs = await SSHSandboxEnvironment.sample_init("t", config, {})
    try:
        return (await envs["default"].exec(["id", "-un"])).stdout
    finally:
        await SSHSandboxEnvironment.sample_cleanup("t", config, envs, False)


def _run(argv: list[str], stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, input=stdin, capture_output=True, timeout=60, check=False)


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "ssh_config"
    path.write_text(text)
    return str(path)


async def test_port_and_hostname_from_ssh_config(sshd: OpenSSHServer, tmp_path: Path) -> None:
    """Regression: the port defaulted to 22 in corral's model and overrode ``Port``."""
    path = _write(
        tmp_path,
        f"Host box\n  HostName {sshd.host}\n  Port {sshd.port}\n  User {sshd.username}\n",
    )
    config = sshd.sandbox_config(hosts=["box"], config=path)
    assert await _whoami(config) == f"{sshd.username}\n"


async def test_a_port_in_corrals_config_wins(sshd: OpenSSHServer, tmp_path: Path) -> None:
    closed = closed_port()
    path = _write(tmp_path, f"Host {sshd.host}\n  Port {closed}\n")
    explicit = sshd.sandbox_config(config=path)  # hosts: 127.0.0.1 with the server's port
    assert await _whoami(explicit) == f"{sshd.username}\n"
    # And the other way round: corral's (closed) port is used, not the ssh_config's.
    path = _write(tmp_path, f"Host {sshd.host}\n  Port {sshd.port}\n")
    wrong = sshd.sandbox_config(
        hosts=[{"host": sshd.host, "port": closed, "username": sshd.username}], config=path
    )
    with pytest.raises(SandboxUnavailableError, match=f"{sshd.host}:{closed}"):
        await _whoami(wrong)


async def test_user_from_ssh_config_and_corrals_username_wins(
    sshd: OpenSSHServer, tmp_path: Path
) -> None:
    box = f"Host box\n  HostName {sshd.host}\n  Port {sshd.port}\n"
    # The other user has no authorized key: logging in as it is refused.
    path = _write(tmp_path, box + f"  User {sshd.other_username}\n")
    with pytest.raises(HostRefusedError, match="authentication failed"):
        await _whoami(sshd.sandbox_config(hosts=["box"], config=path))
    assert await _whoami(sshd.sandbox_config(hosts=[f"{sshd.username}@box"], config=path)) == (
        f"{sshd.username}\n"
    )


async def test_identity_file_from_ssh_config_and_corrals_keys_win(
    sshd: OpenSSHServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)  # no agent keys: only the files count
    box = f"Host box\n  HostName {sshd.host}\n  Port {sshd.port}\n  User {sshd.username}\n"
    path = _write(tmp_path, box + f"  IdentityFile {sshd.client_key}\n")
    from_ssh_config = sshd.sandbox_config(hosts=["box"], config=path)
    del from_ssh_config["client_keys"]
    assert await _whoami(from_ssh_config) == f"{sshd.username}\n"
    # corral's client_keys replace the ssh_config's IdentityFile.
    refused = sshd.sandbox_config(
        hosts=["box"], config=path, client_keys=[str(sshd.unauthorized_key)]
    )
    with pytest.raises(HostRefusedError, match="authentication failed"):
        await _whoami(refused)
    # An IdentityFile naming another key is refused: the line is what let the first one in.
    path = _write(tmp_path, box + f"  IdentityFile {sshd.unauthorized_key}\n")
    with pytest.raises(HostRefusedError, match="authentication failed"):
        await _whoami(sshd.sandbox_config(hosts=["box"], config=path, client_keys=None))


async def test_connection_command_leaves_the_port_to_the_ssh_config(
    no_remote_leftovers: OpenSSHServer, tmp_path: Path
) -> None:
    sshd = no_remote_leftovers
    path = _write(
        tmp_path,
        f"Host box\n  HostName {sshd.host}\n  Port {sshd.port}\n  User {sshd.username}\n",
    )
    config = sshd.sandbox_config(hosts=["box"], config=path)
    envs = await SSHSandboxEnvironment.sample_init("t", config, {})
    try:
        env = envs["default"]
        command = (await env.connection()).command
        directory = (await env.exec(["pwd"])).stdout.strip()
        argv = shlex.split(command)
        assert "-p" not in argv
        assert argv[argv.index("-F") + 1] == path
        # OpenSSH's own client, given the command, reaches the sample's directory.
        ran = await anyio.to_thread.run_sync(
            _run, [argv[0], "-o", "BatchMode=yes", *argv[1:]], b"pwd\nid -un\n"
        )
        assert ran.stdout.decode().split() == [directory, sshd.username], ran.stderr
    finally:
        await SSHSandboxEnvironment.sample_cleanup("t", config, envs, False)
