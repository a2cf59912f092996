"""inspect_ai's environment variables as aliases of corral's: ours win, a bad value is named."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

import pytest

from corral.sandboxes import max_exec_output_size, max_read_file_size
from corral.sandboxes._output_limits import (
    EXEC_OUTPUT_ENV,
    INSPECT_EXEC_OUTPUT_ENV,
    INSPECT_READ_FILE_ENV,
    READ_FILE_ENV,
)
from corral.util import display_type
from corral.util._display import DISPLAY_ENV, INSPECT_DISPLAY_ENV

#: (corral's variable, inspect_ai's, the reader, the default).
SIZES = [
    pytest.param(EXEC_OUTPUT_ENV, INSPECT_EXEC_OUTPUT_ENV, max_exec_output_size, 10 * 1024**2),
    pytest.param(READ_FILE_ENV, INSPECT_READ_FILE_ENV, max_read_file_size, 100 * 1024**2),
]
ALL = [
    (EXEC_OUTPUT_ENV, INSPECT_EXEC_OUTPUT_ENV),
    (READ_FILE_ENV, INSPECT_READ_FILE_ENV),
    (DISPLAY_ENV, INSPECT_DISPLAY_ENV),
]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for ours, theirs in ALL:
        monkeypatch.delenv(ours, raising=False)
        monkeypatch.delenv(theirs, raising=False)


@pytest.mark.parametrize(("ours", "theirs", "read", "default"), SIZES)
def test_inspect_variable_alone_sets_the_limit(
    monkeypatch: pytest.MonkeyPatch, ours: str, theirs: str, read: Callable[[], int], default: int
) -> None:
    assert read() == default
    monkeypatch.setenv(theirs, "4096")
    assert read() == 4096
    monkeypatch.setenv(ours, "  ")  # blank counts as unset
    assert read() == 4096


@pytest.mark.parametrize(("ours", "theirs", "read", "default"), SIZES)
def test_corral_variable_wins_and_says_so_once(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    ours: str,
    theirs: str,
    read: Callable[[], int],
    default: int,
) -> None:
    ignored = str(1000 + uuid.uuid4().int % 1000)  # a new message: warn_once is process-wide
    monkeypatch.setenv(ours, "2048")
    monkeypatch.setenv(theirs, ignored)
    with caplog.at_level(logging.WARNING, logger="corral.settings"):
        assert read() == 2048
        assert read() == 2048
    [warning] = [r for r in caplog.records if r.name == "corral.settings"]
    assert warning.getMessage() == (
        f"${theirs}={ignored!r} is ignored: ${ours}='2048' is set too, and corral's variable wins"
    )


@pytest.mark.parametrize(("ours", "theirs", "read", "default"), SIZES)
def test_the_same_value_in_both_is_quiet(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    ours: str,
    theirs: str,
    read: Callable[[], int],
    default: int,
) -> None:
    monkeypatch.setenv(ours, "777")
    monkeypatch.setenv(theirs, " 777 ")
    with caplog.at_level(logging.WARNING, logger="corral.settings"):
        assert read() == 777
    assert not caplog.records


@pytest.mark.parametrize(("ours", "theirs", "read", "default"), SIZES)
def test_a_bad_inspect_value_names_the_inspect_variable(
    monkeypatch: pytest.MonkeyPatch, ours: str, theirs: str, read: Callable[[], int], default: int
) -> None:
    monkeypatch.setenv(theirs, "10MB")
    with pytest.raises(ValueError, match=rf"^{theirs} must be an integer \(bytes\), got '10MB'"):
        read()
    monkeypatch.setenv(theirs, "0")
    with pytest.raises(ValueError, match=rf"^{theirs} must be a positive integer"):
        read()


@pytest.mark.parametrize(("ours", "theirs", "read", "default"), SIZES)
def test_a_bad_corral_value_is_not_rescued_by_a_good_inspect_one(
    monkeypatch: pytest.MonkeyPatch, ours: str, theirs: str, read: Callable[[], int], default: int
) -> None:
    monkeypatch.setenv(ours, "lots")
    monkeypatch.setenv(theirs, "4096")
    with pytest.raises(ValueError, match=rf"^{ours} must be an integer \(bytes\), got 'lots'"):
        read()


def test_inspect_display_alone_sets_the_display(monkeypatch: pytest.MonkeyPatch) -> None:
    assert display_type() == "full"
    monkeypatch.setenv(INSPECT_DISPLAY_ENV, "Plain")
    assert display_type() == "plain"


def test_corral_display_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(INSPECT_DISPLAY_ENV, "plain")
    monkeypatch.setenv(DISPLAY_ENV, "none")
    assert display_type() == "none"


def test_a_bad_inspect_display_names_the_inspect_variable(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    bogus = f"bogus-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv(INSPECT_DISPLAY_ENV, bogus)
    with caplog.at_level(logging.WARNING, logger="corral.display"):
        assert display_type() == "full"
    [warning] = caplog.records
    assert f"{bogus!r} in ${INSPECT_DISPLAY_ENV} " in warning.getMessage()
