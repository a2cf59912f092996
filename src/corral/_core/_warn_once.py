"""``warn_once(logger, message)``: a warning logged the first time its text is seen.

The record of messages already logged is process-wide and keyed by the text
alone, as in ``inspect_ai``: the same message sent to two loggers is logged
by the first only. Messages are never forgotten, so put no ever-changing
detail (a time, a counter) in one.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from ._checks import check_str

if TYPE_CHECKING:
    import logging

__all__ = ["warn_once"]

_seen: set[str] = set()
_lock = threading.Lock()


def warn_once(logger: logging.Logger, message: str) -> None:
    """Log *message* at WARNING level on *logger*, unless this process already has.

    Safe to call from any thread; not a checkpoint (it never blocks on the
    event loop). The message is logged as given: ``%`` in it is not a format.

    Args:
        logger: The logger to log on.
        message: The text of the warning; it is also what makes it "the same".

    Raises:
        TypeError: *message* is not a ``str``.
    """
    check_str("message", message)
    with _lock:
        if message in _seen:
            return
        _seen.add(message)
    logger.warning("%s", message)
