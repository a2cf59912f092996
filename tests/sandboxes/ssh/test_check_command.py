"""``corral sandbox check ssh --config FILE`` reads the file as the provider does."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.cli.test_sandbox import RUN_SANDBOX, run_cli
from tests.support.sshd import OpenSSHServer


def test_relative_paths_in_the_config_file_resolve_against_the_file(
    sshd: OpenSSHServer, tmp_path: Path
) -> None:
    """Regression: the command parsed the file itself, so relative paths followed the cwd."""
    conf = tmp_path / "conf"
    conf.mkdir()
    shutil.copy(sshd.client_key, conf / "id_test")
    (conf / "id_test").chmod(0o600)
    shutil.copy(sshd.known_hosts, conf / "known_hosts")
    (conf / "ssh.toml").write_text(
        'client_keys = ["id_test"]\n'
        'known_hosts = "known_hosts"\n'
        "[[hosts]]\n"
        f'host = "127.0.0.1"\nport = {sshd.port}\nusername = "{sshd.username}"\n',
        encoding="utf-8",
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = run_cli(
        RUN_SANDBOX,
        "check",
        "ssh",
        "--config",
        str(conf / "ssh.toml"),
        "--backend",
        "trio",
        "-k",
        "text_round_trip",
        cwd=elsewhere,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1] == "1 passed, 0 failed"


@pytest.mark.parametrize("text", ["hosts = [", "[hosts"])
def test_a_config_file_that_does_not_parse_is_refused_once(tmp_path: Path, text: str) -> None:
    config = tmp_path / "ssh.toml"
    config.write_text(text, encoding="utf-8")
    done = run_cli(RUN_SANDBOX, "check", "ssh", "--config", str(config))
    assert done.returncode == 1
    assert done.stderr.count("Cannot read the config file") == 1
    assert "cannot parse" in done.stderr


def test_tests_that_start_their_own_sample_get_the_config_file(
    sshd: OpenSSHServer, tmp_path: Path
) -> None:
    """Regression: the generated suite gave them ``config=None``, which the ssh provider refuses."""
    config = tmp_path / "ssh.toml"
    config.write_text(
        f'client_keys = ["{sshd.client_key}"]\n'
        f'known_hosts = "{sshd.known_hosts}"\n'
        "[[hosts]]\n"
        f'host = "127.0.0.1"\nport = {sshd.port}\nusername = "{sshd.username}"\n',
        encoding="utf-8",
    )
    done = run_cli(
        RUN_SANDBOX,
        "check",
        "ssh",
        "--config",
        str(config),
        "--backend",
        "asyncio",
        "-k",
        "cancelled_sample_leaves_no_process_or_directory",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1] == "1 passed, 0 failed"
