"""Local configuration errors of the ssh sandbox: named (field and path), never the host's fault.

Host keys are always verified unless ``known_hosts = "ignore"``: an
``ssh_config`` that would turn verification off is refused. A key,
known_hosts or ssh_config file that is missing, unreadable or garbage is a
``ValueError`` naming the field and the path, raised before any connection
when it can be seen then, and the host is not passed over for it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

import corral
from corral.sandboxes import HostRefusedError, SSHSandboxConfig
from corral.sandboxes._ssh._environment import SSHSandboxEnvironment
from corral.util import SandboxUnavailableError
from tests.support.sshd import OpenSSHServer


async def _run_a_sample(config: dict[str, object]) -> str:
    """Place a sample with *config*, run ``echo ran`` in it, clean up; its output."""
    envs = await SSHSandboxEnvironment.sample_init("t", config, {})
    try:
        return (await envs["default"].exec(["echo", "ran"])).stdout
    finally:
        await SSHSandboxEnvironment.sample_cleanup("t", config, envs, False)


# -- host keys -------------------------------------------------------------------------


def _ssh_config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "ssh_config"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("StrictHostKeyChecking yes\n# comment\nUserKnownHostsFile none\n", 3),
        ("Host other.example\n  User x\nHost 127.0.0.1\n  UserKnownHostsFile=NONE\n", 4),
        ('Host *\n  UserKnownHostsFile = "none"\n', 2),
    ],
)
def test_user_known_hosts_file_none_is_refused_at_load(
    tmp_path: Path, text: str, line: int
) -> None:
    """Regression: with known_hosts unset, asyncssh took it as "verify nothing"."""
    path = _ssh_config(tmp_path, text)
    with pytest.raises(ValueError, match="UserKnownHostsFile none") as info:
        SSHSandboxConfig.load({"hosts": ["u@127.0.0.1"], "config": path})
    message = str(info.value)
    assert f"{path} line {line}" in message
    assert 'known_hosts = "ignore"' in message
    assert isinstance(info.value, HostRefusedError)  # never retried on another host


def test_user_known_hosts_file_none_is_refused_in_an_included_file(tmp_path: Path) -> None:
    included = tmp_path / "conf.d" / "lab.conf"
    included.parent.mkdir()
    included.write_text("Host lab\n  UserKnownHostsFile none\n")
    # A pattern matching nothing is passed over, as asyncssh does.
    nothing = "/nonexistent-corral-test/*.conf"
    path = _ssh_config(tmp_path, f"Include {nothing}\nInclude {tmp_path}/conf.d/*.conf\n")
    with pytest.raises(ValueError, match=re.escape(f"{included} line 2: UserKnownHostsFile none")):
        SSHSandboxConfig.load({"hosts": ["h"], "config": path})


def test_user_known_hosts_file_none_is_allowed_by_known_hosts_settings(tmp_path: Path) -> None:
    path = _ssh_config(tmp_path, "UserKnownHostsFile none\n")
    ignored = SSHSandboxConfig.load({"hosts": ["h"], "config": path, "known_hosts": "ignore"})
    assert not ignored.verify_host_keys
    # A known_hosts file of corral's own is what asyncssh checks; the line has no effect.
    known = tmp_path / "known_hosts"
    known.write_text("")
    explicit = SSHSandboxConfig.load({"hosts": ["h"], "config": path, "known_hosts": str(known)})
    assert explicit.verify_host_keys


@pytest.mark.anyio
async def test_an_ssh_config_cannot_turn_verification_off(
    sshd: OpenSSHServer, tmp_path: Path
) -> None:
    """Regression: known_hosts unset and ``UserKnownHostsFile none`` in the ssh_config:
    a host whose key is in no file was connected to and ran commands."""
    path = _ssh_config(tmp_path, "StrictHostKeyChecking yes\nUserKnownHostsFile none\n")
    config = sshd.sandbox_config(known_hosts=None, config=path)
    with pytest.raises(ValueError, match=re.escape(f"{path} line 2: UserKnownHostsFile none")):
        await _run_a_sample(config)


@pytest.mark.anyio
async def test_strict_host_key_checking_no_does_not_turn_verification_off(
    sshd: OpenSSHServer, tmp_path: Path
) -> None:
    """asyncssh ignores StrictHostKeyChecking: the unknown key is still refused.

    (This held before the fix as well; it guards the choice not to refuse the option.)
    """
    path = _ssh_config(tmp_path, "StrictHostKeyChecking no\n")
    config = sshd.sandbox_config(known_hosts=None, config=path)
    with pytest.raises(HostRefusedError, match="not trusted"):
        await _run_a_sample(config)


# -- missing and unreadable files ---------------------------------------------------------


@pytest.mark.parametrize("field", ["client_keys", "known_hosts", "config"])
def test_a_missing_file_is_named_at_load(tmp_path: Path, field: str) -> None:
    """Regression: reported as "no ssh host could be reached", the host marked down."""
    missing = str(tmp_path / "absent")
    value: object = [missing] if field == "client_keys" else missing
    with pytest.raises(ValueError, match="No such file or directory") as info:
        SSHSandboxConfig.load({"hosts": ["h"], field: value})
    assert f"{field}: cannot read {missing}" in str(info.value)
    assert isinstance(info.value.__cause__, FileNotFoundError)


@pytest.mark.parametrize("field", ["client_keys", "known_hosts", "config"])
def test_a_directory_or_fifo_is_not_a_file(tmp_path: Path, field: str) -> None:
    fifo = tmp_path / "fifo"
    subprocess.run(["mkfifo", str(fifo)], check=True)
    for path in (str(tmp_path), str(fifo)):  # a FIFO is refused, not waited on
        value: object = [path] if field == "client_keys" else path
        with pytest.raises(ValueError, match=re.escape(f"{field}: cannot read {path}")):
            SSHSandboxConfig.load({"hosts": ["h"], field: value})


@pytest.mark.parametrize("field", ["known_hosts", "config"])
def test_invalid_utf8_is_named_with_its_line(tmp_path: Path, field: str) -> None:
    """Regression: a raw UnicodeDecodeError escaped from the first connection."""
    path = tmp_path / "file"
    path.write_bytes(b"# fine\n\xff\xfe garbage\n")
    with pytest.raises(ValueError, match=re.escape(f"{field}: {path} line 2 is not UTF-8")) as info:
        SSHSandboxConfig.load({"hosts": ["h"], field: str(path)})
    assert isinstance(info.value.__cause__, UnicodeDecodeError)


def test_an_unsplittable_ssh_config_line_is_named(tmp_path: Path) -> None:
    path = _ssh_config(tmp_path, 'Host h\n  User "unclosed\n')
    with pytest.raises(ValueError, match=re.escape(f"config: {path} line 2: No closing quotation")):
        SSHSandboxConfig.load({"hosts": ["h"], "config": path})


@pytest.mark.anyio
async def test_a_missing_key_fails_before_connecting(sshd: OpenSSHServer, tmp_path: Path) -> None:
    """Regression: "no ssh host could be reached: ... No such file or directory"."""
    missing = tmp_path / "no_such_key"
    with pytest.raises(ValueError, match=re.escape(f"client_keys: cannot read {missing}")):
        await _run_a_sample(sshd.sandbox_config(client_keys=[str(missing)]))


@pytest.mark.anyio
async def test_a_file_named_in_the_ssh_config_is_not_the_hosts_fault(
    sshd: OpenSSHServer, tmp_path: Path
) -> None:
    """Regression: a missing IdentityFile (seen only on connecting) marked the host down
    for 30 s and was reported as "no ssh host could be reached"."""
    from corral.sandboxes._ssh._bridge import run_on_ssh_loop
    from corral.sandboxes._ssh._pool import hold, let_go

    missing = tmp_path / "no_such_key"
    path = _ssh_config(tmp_path, f"IdentityFile {missing}\n")
    config = SSHSandboxConfig.load(sshd.sandbox_config(client_keys=None, config=path))

    async def place() -> tuple[BaseException, list[float]]:
        hosts = hold(config)
        try:
            try:
                await hosts.place()
            except (SandboxUnavailableError, ValueError) as exc:
                return exc, [pool.down_until for pool in hosts.pools]
            raise AssertionError("placed")
        finally:
            await let_go(hosts)

    error, down_until = await run_on_ssh_loop(place)
    assert isinstance(error, ValueError)
    assert f"config: cannot read {missing}, named in {path}" in str(error)
    assert isinstance(error.__cause__, FileNotFoundError)
    assert down_until == [0.0]


@pytest.mark.anyio
async def test_a_connect_time_config_error_fails_the_task_once_on_entry(
    sshd: OpenSSHServer, tmp_path: Path
) -> None:
    missing = tmp_path / "no_such_key"
    path = _ssh_config(tmp_path, f"IdentityFile {missing}\n")
    config = sshd.sandbox_config(client_keys=None, config=path)
    with pytest.raises(
        ValueError, match=re.escape(f"cannot read {missing}")
    ):  # the error, not a group
        async with corral.task("t", sandbox=("ssh", config)):
            pytest.fail("the task body ran")


# -- files that do not parse ----------------------------------------------------------


def _encrypted_key(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret", "-f", str(path)], check=True
    )


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"\x00\xff\xfe binary garbage \x80", "Invalid private key"),
        (b"not a key at all\n", "Invalid private key"),
        (None, "Passphrase must be specified"),
    ],
    ids=["binary", "text", "encrypted"],
)
async def test_a_key_that_does_not_parse_is_named(
    sshd: OpenSSHServer, tmp_path: Path, content: bytes | None, reason: str
) -> None:
    """Regression: asyncssh's KeyImportError escaped, naming no file."""
    import asyncssh

    key = tmp_path / "id_test"
    if content is None:
        _encrypted_key(key)
    else:
        key.write_bytes(content)
    with pytest.raises(
        ValueError, match=re.escape(f"client_keys: cannot use the key {key}: {reason}")
    ) as info:
        await _run_a_sample(sshd.sandbox_config(client_keys=[str(key)]))
    assert isinstance(info.value, HostRefusedError)
    assert isinstance(info.value.__cause__, asyncssh.KeyImportError)


@pytest.mark.anyio
async def test_a_key_named_in_the_ssh_config_that_does_not_parse(
    sshd: OpenSSHServer, tmp_path: Path
) -> None:
    import asyncssh

    key = tmp_path / "id_test"
    key.write_bytes(b"\x00\xff garbage")
    path = _ssh_config(tmp_path, f"IdentityFile {key}\n")
    with pytest.raises(
        ValueError, match=re.escape(f"config: a key named by IdentityFile in {path}")
    ) as info:
        await _run_a_sample(sshd.sandbox_config(client_keys=None, config=path))
    assert isinstance(info.value.__cause__, asyncssh.KeyImportError)


@pytest.mark.anyio
async def test_a_malformed_known_hosts_line_is_named(sshd: OpenSSHServer, tmp_path: Path) -> None:
    """Regression: a bare ValueError("Invalid known hosts entry: ...") naming no file."""
    known = tmp_path / "known_hosts"
    shutil.copy(sshd.known_hosts, known)
    with known.open("a") as file:
        file.write("justoneword\n")
    with pytest.raises(
        ValueError, match=re.escape(f"known_hosts: cannot use {known}: Invalid known hosts")
    ):
        await _run_a_sample(sshd.sandbox_config(known_hosts=str(known)))


@pytest.mark.anyio
async def test_a_known_hosts_file_named_in_the_ssh_config_with_invalid_utf8(
    sshd: OpenSSHServer, tmp_path: Path
) -> None:
    """Regression: a raw UnicodeDecodeError escaped."""
    known = tmp_path / "known_hosts"
    known.write_bytes(b"\xff\xfe\n")
    path = _ssh_config(tmp_path, f"UserKnownHostsFile {known}\n")
    with pytest.raises(ValueError, match=re.escape(f"a file named in {path}")) as info:
        await _run_a_sample(sshd.sandbox_config(known_hosts=None, config=path))
    assert isinstance(info.value, HostRefusedError)
    assert isinstance(info.value.__cause__, UnicodeDecodeError)


@pytest.mark.anyio
async def test_an_ssh_config_asyncssh_cannot_parse_is_named(
    sshd: OpenSSHServer, tmp_path: Path
) -> None:
    """Regression: asyncssh's ConfigParseError escaped as it was."""
    path = _ssh_config(tmp_path, "ConnectTimeout soon\n")
    with pytest.raises(
        ValueError, match=re.escape(f"config: {path} line 1: Invalid ConnectTimeout")
    ):
        await _run_a_sample(sshd.sandbox_config(config=path))


@pytest.mark.anyio
@pytest.mark.parametrize("where", ["hosts", "config"])
async def test_a_username_saslprep_refuses_is_named(
    sshd: OpenSSHServer, tmp_path: Path, where: str
) -> None:
    """Regression: asyncssh's SASLPrepError escaped, naming neither field nor file."""
    from asyncssh.saslprep import SASLPrepError

    bad = "bad\u200fname"
    host: dict[str, object] = {"host": sshd.host, "port": sshd.port}
    overrides: dict[str, object] = {"hosts": [host]}
    if where == "hosts":
        host["username"] = bad
        expected = f"hosts: the username {bad!r}"
    else:
        overrides["config"] = path = _ssh_config(tmp_path, f"User {bad}\n")
        expected = f"config: the User in {path}"
    with pytest.raises(ValueError, match=re.escape(expected)) as info:
        await _run_a_sample(sshd.sandbox_config(**overrides))
    assert isinstance(info.value.__cause__, SASLPrepError)
