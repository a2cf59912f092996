"""The one loader of configuration files: formats by suffix, and errors that name the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral._core._config_files import load_config_file


def test_formats_by_suffix(tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text('{"a": [1, 2]}', encoding="utf-8")
    (tmp_path / "c.toml").write_text("a = [1, 2]\n[b]\nc = 'd'\n", encoding="utf-8")
    (tmp_path / "c.yaml").write_text("a: [1, 2]\n", encoding="utf-8")
    (tmp_path / "C.YML").write_text("a: [1, 2]\n", encoding="utf-8")
    assert load_config_file(tmp_path / "c.json") == {"a": [1, 2]}
    assert load_config_file(tmp_path / "c.toml") == {"a": [1, 2], "b": {"c": "d"}}
    assert load_config_file(tmp_path / "c.yaml") == {"a": [1, 2]}
    assert load_config_file(str(tmp_path / "C.YML")) == {"a": [1, 2]}


@pytest.mark.parametrize(
    ("name", "text"),
    [("bad.json", "{nope"), ("bad.toml", "a = = 1"), ("bad.yaml", "a: [1, 2")],
)
def test_a_file_that_does_not_parse_is_named(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=f"cannot parse the widget settings in {path}"):
        load_config_file(path, what="widget settings")


def test_unknown_suffix_and_missing_file_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"settings file '.*conf\.ini': expected a \.toml"):
        load_config_file(tmp_path / "conf.ini", what="settings")
    with pytest.raises(FileNotFoundError) as info:
        load_config_file(tmp_path / "missing.toml", what="settings")
    assert info.value.filename == str(tmp_path / "missing.toml")
    assert "settings file not found" in str(info.value)


def test_a_file_that_is_not_utf8_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes(b'{"caf\xe9": 1}')
    with pytest.raises(ValueError, match="not UTF-8"):
        load_config_file(path)
