"""Calling into the running event loop from anywhere: another thread, or a signal handler.

Both backends have a primitive for it (trio's ``TrioToken.run_sync_soon``,
asyncio's ``loop.call_soon_threadsafe``); anyio's ``from_thread.run_sync``
waits for the result, which a signal handler on the loop's own thread, or
the SSH loop's thread handing over output, must not do.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import sniffio

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["soon_in_this_loop"]


def soon_in_this_loop(fn: Callable[[], object]) -> Callable[[], None]:
    """A function that, called from any thread, runs *fn* soon in the running event loop.

    Call this inside the loop; the returned function never blocks and does
    nothing once the loop has finished.
    """
    if sniffio.current_async_library() == "trio":
        import trio

        token = trio.lowlevel.current_trio_token()

        def schedule_trio() -> None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(fn)

        return schedule_trio

    import asyncio

    loop = asyncio.get_running_loop()

    def schedule_asyncio() -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed
            loop.call_soon_threadsafe(fn)

    return schedule_asyncio
