"""Virtual clocks for both backends: time moves only when every task waits on a timer.

Under trio, ``trio.testing.MockClock(autojump_threshold=0)``; under asyncio,
:class:`VirtualTimeLoop`, its counterpart. For tests where time itself is not
under test (throttle windows, long timeouts), so an hour costs nothing.
"""

from __future__ import annotations

import asyncio
import selectors
from typing import Any

import sniffio
import trio
import trio.testing

__all__ = ["VirtualTimeLoop", "jump", "virtual_backend"]


class _AutojumpSelector(selectors.DefaultSelector):
    """Polls; when nothing is ready and the loop would wait for a timer, jumps to it."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            return super().select(None)
        ready = super().select(0)
        if not ready and timeout > 0:
            self._loop.jump(timeout)
        return ready


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An asyncio loop whose clock only moves when every task waits on a timer.

    The asyncio counterpart of ``trio.testing.MockClock(autojump_threshold=0)``,
    for tests that wait on timers only (a jump ignores pending I/O from threads).
    """

    def __init__(self) -> None:
        self._now = 0.0
        super().__init__(selector=_AutojumpSelector(self))

    def time(self) -> float:
        return self._now

    def jump(self, seconds: float) -> None:
        self._now += seconds


def virtual_backend(name: str) -> tuple[str, dict[str, Any]]:
    """An ``anyio_backend`` value: *name* (``"trio"`` or ``"asyncio"``) with a virtual clock."""
    if name == "trio":
        return "trio", {"clock": trio.testing.MockClock(autojump_threshold=0)}
    return "asyncio", {"loop_factory": VirtualTimeLoop}


def jump(seconds: float) -> None:
    """Move the virtual clock forward without letting any task run."""
    if sniffio.current_async_library() == "trio":
        clock = trio.lowlevel.current_clock()
        assert isinstance(clock, trio.testing.MockClock)
        clock.jump(seconds)
    else:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualTimeLoop)
        loop.jump(seconds)
