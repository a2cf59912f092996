"""warn_once(logger, message): one warning per message text, for the whole process."""

from __future__ import annotations

import logging
import threading
import uuid

import pytest

from corral.util import warn_once


def test_a_message_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("tests.warn_once")
    message = f"disk nearly full {uuid.uuid4().hex}"
    with caplog.at_level(logging.WARNING, logger="tests.warn_once"):
        for _ in range(3):
            warn_once(logger, message)
        warn_once(logger, message + "!")
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, message),
        (logging.WARNING, message + "!"),
    ]


def test_the_text_alone_makes_it_the_same(caplog: pytest.LogCaptureFixture) -> None:
    message = f"only once {uuid.uuid4().hex}"
    with caplog.at_level(logging.WARNING):
        warn_once(logging.getLogger("tests.first"), message)
        warn_once(logging.getLogger("tests.second"), message)
    assert [r.name for r in caplog.records] == ["tests.first"]


def test_percent_signs_are_not_a_format(caplog: pytest.LogCaptureFixture) -> None:
    message = f"100% of %s {uuid.uuid4().hex}"
    with caplog.at_level(logging.WARNING, logger="tests.warn_once"):
        warn_once(logging.getLogger("tests.warn_once"), message)
    assert caplog.records[0].getMessage() == message


def test_threads_racing_log_it_once(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("tests.warn_once")
    message = f"raced {uuid.uuid4().hex}"
    start = threading.Barrier(8)

    def race() -> None:
        start.wait()
        warn_once(logger, message)

    with caplog.at_level(logging.WARNING, logger="tests.warn_once"):
        threads = [threading.Thread(target=race) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(caplog.records) == 1


def test_message_must_be_a_str() -> None:
    with pytest.raises(TypeError, match="message must be a str, got int"):
        warn_once(logging.getLogger("tests.warn_once"), 42)  # type: ignore[arg-type]
