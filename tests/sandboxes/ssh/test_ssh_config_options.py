"""Options of the user's ``ssh_config`` reach the connection unless corral's config sets them.

Against the real test sshd: ``HostName``, ``Port``, ``User`` and
``IdentityFile`` from an ``ssh_config`` apply to a host written as an alias
(``hosts=["box"]``), and what corral's configuration says explicitly wins.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from corral.sandboxes import HostRefusedError, SSHSandboxConfig
from corral.sandboxes._ssh._config import SSHConfigError
from corral.sandboxes._ssh._environment import SSHSandboxEnvironment
from corral.sandboxes._ssh._pool import proxy_jumps
from corral.util import SandboxUnavailableError
from tests.support.processes import wait_gone
from tests.support.sshd import OpenSSHServer, SSHServerUnavailable

from .conftest import ssh_unavailable
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


# -- ProxyJump ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def jump_sshd(
    sshd: OpenSSHServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OpenSSHServer]:
    """A second sshd on loopback, the jump host: its own users, its log at DEBUG1.

    Its own users, so that stopping it does not kill the sessions of the
    session's server; DEBUG1, so that its log names each forwarded connection.
    """
    server = OpenSSHServer(tmp_path_factory.mktemp("jump"), own_users=True, log_level="DEBUG1")
    try:
        server.start()
    except SSHServerUnavailable as error:
        ssh_unavailable(str(error))
    try:
        yield server
    finally:
        server.__exit__()


def _jump_config(tmp_path: Path, target: OpenSSHServer, jump: OpenSSHServer, proxy: str) -> str:
    """An ssh_config: ``box`` is *target*, reached through ``ProxyJump {proxy}``."""
    return _write(
        tmp_path,
        f"Host box\n  HostName {target.host}\n  Port {target.port}\n  User {target.username}\n"
        f"  ProxyJump {proxy}\n"
        f"Host jump\n  HostName {jump.host}\n  Port {jump.port}\n  User {jump.username}\n"
        f"  IdentityFile {jump.client_key}\n  UserKnownHostsFile {jump.known_hosts}\n",
    )


def _log_since(server: OpenSSHServer, offset: int) -> str:
    with server.log_file.open("rb") as log:
        log.seek(offset)
        return log.read().decode(errors="replace")


def _forwarded(log: str) -> list[tuple[str, str]]:
    """(host, port) of each connection sshd forwarded (``direct-tcpip``), from its DEBUG1 log."""
    return re.findall(r"server_request_direct_tcpip: .*target (\S+) port (\d+)", log)


async def test_proxy_jump_goes_through_the_jump_host(
    sshd: OpenSSHServer, jump_sshd: OpenSSHServer, tmp_path: Path
) -> None:
    assert jump_sshd.username != sshd.username
    path = _jump_config(tmp_path, sshd, jump_sshd, "jump")
    start = jump_sshd.log_file.stat().st_size
    config = sshd.sandbox_config(hosts=["box"], config=path)
    envs = await SSHSandboxEnvironment.sample_init("t", config, {})
    try:
        assert (await envs["default"].exec(["id", "-un"])).stdout == f"{sshd.username}\n"
        assert jump_sshd.session_processes() != []  # the pooled connection holds the hop
    finally:
        await SSHSandboxEnvironment.sample_cleanup("t", config, envs, False)
    logged = _log_since(jump_sshd, start)
    # The jump host let its own user in, and forwarded a connection to the target's port.
    assert f"Accepted publickey for {jump_sshd.username}" in logged
    assert _forwarded(logged) == [(sshd.host, str(sshd.port))], logged
    # The hop is closed with the pool's connection.
    assert wait_gone(jump_sshd.session_processes()) == []


async def test_proxy_jump_with_two_hops(
    sshd: OpenSSHServer, jump_sshd: OpenSSHServer, tmp_path: Path
) -> None:
    """``ProxyJump a,b``: b is reached through a, the target through b (here: a = b)."""
    path = _jump_config(tmp_path, sshd, jump_sshd, "jump,jump")
    start = jump_sshd.log_file.stat().st_size
    config = sshd.sandbox_config(hosts=["box"], config=path)
    assert await _whoami(config) == f"{sshd.username}\n"
    logged = _log_since(jump_sshd, start)
    assert logged.count(f"Accepted publickey for {jump_sshd.username}") == 2
    assert _forwarded(logged) == [
        (jump_sshd.host, str(jump_sshd.port)),
        (sshd.host, str(sshd.port)),
    ]
    assert wait_gone(jump_sshd.session_processes()) == []


@pytest.mark.parametrize("fault", ["closed port", "host key", "refused key"])
async def test_a_bad_proxy_jump_names_the_hop(
    sshd: OpenSSHServer, jump_sshd: OpenSSHServer, tmp_path: Path, fault: str
) -> None:
    jump = jump_sshd
    port = closed_port() if fault == "closed port" else jump.port
    known = jump.wrong_known_hosts if fault == "host key" else jump.known_hosts
    key = jump.unauthorized_key if fault == "refused key" else jump.client_key
    path = _write(
        tmp_path,
        f"Host box\n  HostName {sshd.host}\n  Port {sshd.port}\n  ProxyJump jump\n"
        f"Host jump\n  HostName {jump.host}\n  Port {port}\n  User {jump.username}\n"
        f"  IdentityFile {key}\n  UserKnownHostsFile {known}\n",
    )
    config = sshd.sandbox_config(hosts=[f"{sshd.username}@box"], config=path)
    expected = {
        "closed port": SandboxUnavailableError,
        "host key": HostRefusedError,
        "refused key": HostRefusedError,
    }[fault]
    with pytest.raises(expected) as info:
        await _whoami(config)
    message = str(info.value)
    assert f"the ProxyJump host jump of {sshd.username}@box" in message
    if fault == "closed port":
        assert not isinstance(info.value, HostRefusedError)
        assert str(port) in message
    elif fault == "host key":
        # Not corral's known_hosts, which is for the configured hosts only.
        assert "not trusted" in message
        assert str(sshd.known_hosts) not in message
        assert f"known_hosts files {path} names" in message
    else:
        assert "authentication failed" in message
        assert f"IdentityFile {path} gives it" in message
    assert wait_gone(jump.session_processes()) == []


async def test_the_target_refusing_the_forwarded_connection_names_it(
    sshd: OpenSSHServer, jump_sshd: OpenSSHServer, tmp_path: Path
) -> None:
    """The hop is up, the target's port closed: the target is named, the hop closed again."""
    path = _write(
        tmp_path,
        f"Host box\n  HostName {sshd.host}\n  Port {closed_port()}\n  ProxyJump jump\n"
        f"Host jump\n  HostName {jump_sshd.host}\n  Port {jump_sshd.port}\n"
        f"  User {jump_sshd.username}\n  IdentityFile {jump_sshd.client_key}\n"
        f"  UserKnownHostsFile {jump_sshd.known_hosts}\n",
    )
    config = sshd.sandbox_config(hosts=[f"{sshd.username}@box"], config=path)
    with pytest.raises(SandboxUnavailableError, match=f"cannot connect to {sshd.username}@box:"):
        await _whoami(config)
    assert wait_gone(jump_sshd.session_processes()) == []


@pytest.mark.parametrize("value", ["u@jump:notaport", "a,,b", "ssh://u:pw@h"])
def test_a_malformed_proxy_jump_is_named_at_load(tmp_path: Path, value: str) -> None:
    path = _write(tmp_path, f"Host other\n  User x\nHost box\n  ProxyJump {value}\n")
    # A configuration error (not the host's fault), naming the field, the file and the line.
    with pytest.raises(SSHConfigError, match=re.escape(f"config: {path} line 4: ProxyJump")):
        SSHSandboxConfig.load({"hosts": ["box"], "config": path})
    # Read as the pool reads it, without the check: named too, with the host.
    unchecked = SSHSandboxConfig.model_validate({"hosts": ["box"], "config": path})
    with pytest.raises(SSHConfigError, match=re.escape(path)) as info:
        proxy_jumps(unchecked, unchecked.hosts[0])
    assert "ProxyJump" in str(info.value)
    assert "for box" in str(info.value)


def test_a_proxy_jump_of_two_words_is_named_at_load(tmp_path: Path) -> None:
    path = _write(tmp_path, "Host box\n  ProxyJump a b\n")
    with pytest.raises(SSHConfigError, match=re.escape(f"{path} line 2: ProxyJump 'a b'")):
        SSHSandboxConfig.load({"hosts": ["box"], "config": path})


def test_proxy_jumps_as_the_pool_reads_them(tmp_path: Path) -> None:
    # ProxyJump none, or none at all: no hops.
    path = _write(
        tmp_path,
        "Host box\n  ProxyJump none\nHost other\n  ProxyJump a,u@b:2222,ssh://c\n",
    )
    config = SSHSandboxConfig.load({"hosts": ["box", "other", "third"], "config": path})
    assert [[hop.label for hop in proxy_jumps(config, host)] for host in config.hosts] == [
        [],
        ["a", "u@b:2222", "c"],
        [],
    ]


@pytest.mark.parametrize("known_hosts", [None, "file"])
def test_user_known_hosts_file_none_is_refused_when_a_proxy_jump_could_use_it(
    tmp_path: Path, known_hosts: str | None
) -> None:
    """corral's known_hosts covers the configured hosts, not the ProxyJump hosts."""
    path = _write(tmp_path, "Host box\n  ProxyJump jump\nHost jump\n  UserKnownHostsFile none\n")
    fields: dict[str, object] = {"hosts": ["box"], "config": path}
    if known_hosts is not None:
        (tmp_path / "known_hosts").write_text("")
        fields["known_hosts"] = str(tmp_path / "known_hosts")
    with pytest.raises(ValueError, match=f"{re.escape(path)} line 4: UserKnownHostsFile none"):
        SSHSandboxConfig.load(fields)
    # Without the ProxyJump, corral's known_hosts file is all that is read: allowed.
    _write(tmp_path, "Host jump\n  UserKnownHostsFile none\n")
    if known_hosts is not None:
        assert SSHSandboxConfig.load(fields).verify_host_keys
    # known_hosts = "ignore", written out, allows it either way.
    _write(tmp_path, "Host box\n  ProxyJump jump\nHost jump\n  UserKnownHostsFile none\n")
    assert not SSHSandboxConfig.load({**fields, "known_hosts": "ignore"}).verify_host_keys


async def test_a_server_with_its_own_users_stops_without_killing_the_others_sessions(
    sshd: OpenSSHServer, tmp_path: Path
) -> None:
    """The test sshd's ``own_users``: what the jump host fixture relies on."""
    config = sshd.sandbox_config()
    envs = await SSHSandboxEnvironment.sample_init("t", config, {})
    try:
        env = envs["default"]
        assert (await env.exec(["true"])).returncode == 0
        sessions = sshd.session_processes()
        assert sessions != []
        with OpenSSHServer(tmp_path / "third", own_users=True) as third:
            assert {third.username, third.other_username}.isdisjoint(
                {sshd.username, sshd.other_username}
            )
        assert not third.running
        # The first server's sessions (and the pooled connection) are still there.
        assert (await env.exec(["id", "-un"])).stdout == f"{sshd.username}\n"
        assert sshd.session_processes() == sessions
    finally:
        await SSHSandboxEnvironment.sample_cleanup("t", config, envs, False)


def test_own_users_and_log_level_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="own_users"):
        OpenSSHServer(tmp_path, username="a", other_username="b", own_users=True)
    with pytest.raises(ValueError, match="LogLevel"):
        OpenSSHServer(tmp_path, log_level="DEBUG1\nPermitRootLogin yes")
