"""Run asyncssh code from trio or asyncio: the bridge to the SSH event loop.

asyncssh runs only on asyncio. Everything the ``"ssh"`` sandbox does on the
network is written as coroutines for *the SSH loop*:

* under asyncio, that is the running loop, and :func:`run_on_ssh_loop`
  simply awaits the coroutine, so cancellation is the caller's own;
* under trio, it is one asyncio loop in a daemon thread (``corral-ssh``),
  started on first use and shared by every trio run of the process. The
  coroutine runs there as an asyncio task, inside an anyio cancel scope,
  while the trio task sleeps; a trio cancellation cancels that scope and
  waits until the task has finished. So the coroutine sees the same anyio
  cancellation under both backends (shielded scopes hold), and its own
  cleanup, such as killing a remote command and closing its channel, runs
  to the end before the trio side sees ``Cancelled``.

Coroutines that cross the bridge must not read the caller's context
variables: they run in the SSH loop's context. Read them before crossing and
pass the values.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import outcome
import sniffio

from .._errors import SandboxUnavailableError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    import trio

__all__ = ["run_on_ssh_loop"]

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def _serve(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.call_soon(ready.set)
    loop.run_forever()


def _thread_loop() -> asyncio.AbstractEventLoop:
    """The SSH loop's thread for trio callers, started on first use."""
    global _loop
    loop = _loop
    if loop is not None:
        return loop
    with _lock:
        if _loop is None:
            loop = asyncio.new_event_loop()
            ready = threading.Event()
            threading.Thread(
                target=_serve, args=(loop, ready), name="corral-ssh", daemon=True
            ).start()
            ready.wait()
            _loop = loop
        return _loop


def _forget_loop_after_fork() -> None:
    # The thread does not exist in a forked child; its loop must not be used.
    global _loop
    _loop = None


os.register_at_fork(after_in_child=_forget_loop_after_fork)


async def run_on_ssh_loop(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Await ``fn(*args)`` on the SSH loop and return its result.

    Args:
        fn: An async function written for asyncio (asyncssh).
        *args: Its arguments.

    Returns:
        What ``fn`` returned.

    Raises:
        Exception: Whatever ``fn`` raised, unchanged.
        SandboxUnavailableError: (trio) the SSH loop cancelled ``fn`` on its own.

    **Cancellation:** under asyncio, ``fn`` is cancelled as any coroutine
    the caller awaits. Under trio, ``fn``'s asyncio task is cancelled and
    this waits for it to finish before raising ``Cancelled``; if it finished
    with a result or an error first, that is returned or raised instead.
    """
    if sniffio.current_async_library() != "trio":
        return await fn(*args)
    return await _run_from_trio(fn, args)


class _Call:
    """One coroutine handed to the SSH loop, and the cancel scope it runs in there."""

    __slots__ = ("cancel_requested", "scope")

    def __init__(self) -> None:
        self.scope: anyio.CancelScope | None = None
        self.cancel_requested = False

    def cancel(self) -> None:  # on the SSH loop
        self.cancel_requested = True
        if self.scope is not None:
            self.scope.cancel()

    async def run(self, fn: Callable[..., Awaitable[T]], args: tuple[Any, ...]) -> T:
        with anyio.CancelScope() as scope:
            self.scope = scope
            if self.cancel_requested:
                scope.cancel()
            return await fn(*args)
        # Only our own cancellation ends the scope without a result.
        raise asyncio.CancelledError


async def _run_from_trio(fn: Callable[..., Awaitable[T]], args: tuple[Any, ...]) -> T:
    import trio

    loop = _thread_loop()
    token = trio.lowlevel.current_trio_token()
    waiter = trio.lowlevel.current_task()
    call = _Call()

    def finished(task: asyncio.Task[T]) -> None:  # on the SSH loop
        result: outcome.Outcome[T] = outcome.capture(task.result)
        token.run_sync_soon(trio.lowlevel.reschedule, waiter, result)

    def start() -> None:  # on the SSH loop
        # A context of its own: the caller's (trio's, sniffio's) must not leak in.
        task = loop.create_task(call.run(fn, args), context=contextvars.Context())
        task.add_done_callback(finished)

    def abort(_: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:  # on the trio thread
        loop.call_soon_threadsafe(call.cancel)
        # The asyncio task decides when it is done; finished() reschedules us.
        return trio.lowlevel.Abort.FAILED

    loop.call_soon_threadsafe(start, context=contextvars.Context())
    try:
        result: T = await trio.lowlevel.wait_task_rescheduled(abort)
    except asyncio.CancelledError:
        if call.scope is not None and call.scope.cancel_called:
            # Our scope is cancelled: this checkpoint raises trio.Cancelled.
            await trio.lowlevel.checkpoint()
        raise SandboxUnavailableError("the SSH event loop cancelled the operation") from None
    return result
