"""SSHSandboxConfig: every accepted form, and errors that name what is wrong."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from corral.sandboxes import SSHHostConfig, SSHSandboxConfig


def test_dict_with_host_strings_and_defaults() -> None:
    config = SSHSandboxConfig.load(
        {"hosts": ["alice@a.example", "b.example:2222", {"host": "c", "max_sandboxes": 4}]}
    )
    assert [host.label for host in config.hosts] == ["alice@a.example", "b.example:2222", "c"]
    assert config.hosts[2].max_sandboxes == 4
    # A port left out is left to the ssh_config (its Port, else 22): not a 22 that overrides it.
    assert [host.port for host in config.hosts] == [None, 2222, None]
    assert config.hosts[0].max_sessions == 10
    assert config.known_hosts is None
    assert config.verify_host_keys
    assert config.workdir_base == "/tmp"
    assert (config.connect_timeout, config.keepalive_interval) == (10.0, 10.0)
    assert config.cleanup_retry == 30.0


def test_one_host_and_one_key_may_be_given_bare(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "id_test").write_text("a key\n")  # load checks that it is a file
    config = SSHSandboxConfig.load({"hosts": "bob@h:2200", "client_keys": "~/.ssh/id_test"})
    assert config.hosts == [SSHHostConfig(host="h", port=2200, username="bob")]
    assert config.client_keys == [os.path.expanduser("~/.ssh/id_test")]


def test_url() -> None:
    config = SSHSandboxConfig.load("ssh://carol@10.0.0.5:2022")
    assert config.hosts == [SSHHostConfig(host="10.0.0.5", port=2022, username="carol")]
    ipv6 = SSHSandboxConfig.load("ssh://[::1]:2022")
    assert ipv6.hosts[0].host == "::1"
    assert ipv6.hosts[0].label == "[::1]:2022"


@pytest.mark.parametrize("url", ["ssh://", "ssh://h:99999", "ssh://h/path", "ssh://u:pw@h"])
def test_bad_url_is_named(url: str) -> None:
    with pytest.raises(ValueError, match="ssh") as info:
        SSHSandboxConfig.load(url)
    assert url in str(info.value) or "host" in str(info.value)


def test_toml_file_with_paths_relative_to_it(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "id_ed25519").write_text("a key\n")  # load checks the files exist
    (tmp_path / "known_hosts").write_text("")
    path = tmp_path / "hosts.toml"
    path.write_text(
        'client_keys = ["keys/id_ed25519"]\nknown_hosts = "known_hosts"\n'
        "connect_timeout = 3\n"
        '[[hosts]]\nhost = "a"\nusername = "u"\n[[hosts]]\nhost = "b"\nport = 2222\n'
    )
    config = SSHSandboxConfig.load(str(path))
    assert config.client_keys == [str(tmp_path / "keys/id_ed25519")]
    assert config.known_hosts == str(tmp_path / "known_hosts")
    assert [host.label for host in config.hosts] == ["u@a", "b:2222"]
    assert config.connect_timeout == 3


def test_yaml_and_json_files(tmp_path: Path) -> None:
    yaml_path = tmp_path / "hosts.yaml"
    yaml_path.write_text(
        "hosts:\n  - u@a\n  - host: b\n    max_sandboxes: 2\nknown_hosts: ignore\n"
    )
    config = SSHSandboxConfig.load(yaml_path)
    assert [host.label for host in config.hosts] == ["u@a", "b"]
    assert config.known_hosts == "ignore"
    assert not config.verify_host_keys
    json_path = tmp_path / "hosts.json"
    json_path.write_text('{"hosts": ["a"], "workdir_base": "/scratch/"}')
    assert SSHSandboxConfig.load(json_path).workdir_base == "/scratch"


def test_errors_name_the_field_and_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[[hosts]]\nhost = "a"\nport = 0\n')
    with pytest.raises(ValueError, match=r"hosts\.0\.port") as info:
        SSHSandboxConfig.load(path)
    assert str(path) in str(info.value)
    with pytest.raises(ValueError, match="workdir_base"):
        SSHSandboxConfig.load({"hosts": ["a"], "workdir_base": "relative"})
    with pytest.raises(ValueError, match="hostz"):
        SSHSandboxConfig.load({"hostz": ["a"]})
    with pytest.raises(ValueError, match="hosts"):
        SSHSandboxConfig.load({"hosts": []})
    with pytest.raises(ValueError, match="connect_timeout"):
        SSHSandboxConfig.load({"hosts": ["a"], "connect_timeout": 0})
    for bad in (-1, float("inf")):
        with pytest.raises(ValueError, match="cleanup_retry"):
            SSHSandboxConfig.load({"hosts": ["a"], "cleanup_retry": bad})
    assert SSHSandboxConfig.load({"hosts": ["a"], "cleanup_retry": 0}).cleanup_retry == 0


def test_missing_and_unparseable_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        SSHSandboxConfig.load(tmp_path / "absent.toml")
    assert "absent.toml" in str(info.value)
    broken = tmp_path / "broken.yaml"
    broken.write_text("hosts: [a\n")
    with pytest.raises(ValueError, match="cannot parse"):
        SSHSandboxConfig.load(broken)
    with pytest.raises(ValueError, match=r"\.toml, \.yaml"):
        SSHSandboxConfig.load(tmp_path / "hosts.ini")


def test_missing_config_and_wrong_types() -> None:
    with pytest.raises(ValueError, match="needs a configuration"):
        SSHSandboxConfig.load(None)
    with pytest.raises(TypeError, match="int"):
        SSHSandboxConfig.load(42)
    config = SSHSandboxConfig.load({"hosts": ["a"]})
    assert SSHSandboxConfig.load(config) is config


def test_env_names_must_be_shell_names() -> None:
    from corral._core._checks import check_env

    assert check_env("env", {"A_1": "x y", "_b": ""}, names=True) == {"A_1": "x y", "_b": ""}
    with pytest.raises(ValueError, match="'A-B'"):
        check_env("env", {"A-B": "x"}, names=True)
    with pytest.raises(ValueError, match="'1A'"):
        check_env("env", {"1A": "x"}, names=True)
    with pytest.raises(ValueError, match="NUL"):
        check_env("env", {"A": "x\0y"}, names=True)
