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
import collections
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

__all__ = ["call_soon_on_ssh_loop", "run_on_ssh_loop"]

T = TypeVar("T")

_lock = threading.Lock()
_inbox: _Inbox | None = None


class _Inbox:
    """Callbacks for the SSH loop from other threads, with one wakeup per batch.

    ``loop.call_soon_threadsafe`` wakes the loop once per call; under load
    (many trio tasks calling at once) one wakeup serves every callback queued
    until the loop gets to them. Order is kept.
    """

    __slots__ = ("_items", "_lock", "_scheduled", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._items: collections.deque[Callable[[], object]] = collections.deque()
        self._lock = threading.Lock()
        self._scheduled = False

    def put(self, callback: Callable[[], object]) -> None:  # any thread
        with self._lock:
            self._items.append(callback)
            if self._scheduled:
                return
            self._scheduled = True
        # A context of its own: the caller's (trio's, sniffio's) must not leak in.
        self.loop.call_soon_threadsafe(self._drain, context=contextvars.Context())

    def _drain(self) -> None:  # on the SSH loop
        with self._lock:
            items, self._items = self._items, collections.deque()
            self._scheduled = False
        for callback in items:
            callback()


class _Outbox:
    """Results for one trio run from the SSH loop, with one wakeup per batch."""

    __slots__ = ("_items", "_lock", "_scheduled", "_token")

    def __init__(self, token: trio.lowlevel.TrioToken) -> None:
        self._token = token
        self._items: list[tuple[trio.lowlevel.Task, outcome.Outcome[Any]]] = []
        self._lock = threading.Lock()
        self._scheduled = False

    def put(self, task: trio.lowlevel.Task, result: outcome.Outcome[Any]) -> None:  # SSH loop
        with self._lock:
            self._items.append((task, result))
            if self._scheduled:
                return
            self._scheduled = True
        self._token.run_sync_soon(self._drain)

    def _drain(self) -> None:  # on the trio thread
        import trio

        with self._lock:
            items, self._items = self._items, []
            self._scheduled = False
        for task, result in items:
            trio.lowlevel.reschedule(task, result)


def _serve(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.call_soon(ready.set)
    loop.run_forever()


def _thread_inbox() -> _Inbox:
    """The inbox of the SSH loop's thread for trio callers, started on first use."""
    global _inbox
    inbox = _inbox
    if inbox is not None:
        return inbox
    with _lock:
        if _inbox is None:
            loop = asyncio.new_event_loop()
            ready = threading.Event()
            threading.Thread(
                target=_serve, args=(loop, ready), name="corral-ssh", daemon=True
            ).start()
            ready.wait()
            _inbox = _Inbox(loop)
        return _inbox


def _forget_loop_after_fork() -> None:
    # The thread does not exist in a forked child; its loop must not be used.
    global _inbox
    _inbox = None


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


def call_soon_on_ssh_loop(callback: Callable[..., object], *args: Any) -> None:
    """Run ``callback(*args)`` on the SSH loop, without waiting for it.

    Under asyncio it runs now; under trio it is queued for the loop's thread,
    in order with every other call queued from this process (so a later
    :func:`run_on_ssh_loop` runs after it). Its result and errors are dropped.
    """
    if sniffio.current_async_library() != "trio":
        callback(*args)
        return
    _thread_inbox().put(lambda: callback(*args))


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

    inbox = _thread_inbox()
    outbox = _run_outbox()
    waiter = trio.lowlevel.current_task()
    call = _Call()

    def finished(task: asyncio.Task[T]) -> None:  # on the SSH loop
        outbox.put(waiter, outcome.capture(task.result))

    def start() -> None:  # on the SSH loop
        # The inbox runs this in an empty context: trio's must not leak in.
        task = inbox.loop.create_task(call.run(fn, args))
        task.add_done_callback(finished)

    def abort(_: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:  # on the trio thread
        inbox.put(call.cancel)
        # The asyncio task decides when it is done; finished() reschedules us.
        return trio.lowlevel.Abort.FAILED

    inbox.put(start)
    try:
        result: T = await trio.lowlevel.wait_task_rescheduled(abort)
    except asyncio.CancelledError:
        if call.scope is not None and call.scope.cancel_called:
            # Our scope is cancelled: this checkpoint raises trio.Cancelled.
            await trio.lowlevel.checkpoint()
        raise SandboxUnavailableError("the SSH event loop cancelled the operation") from None
    return result


_outboxes: trio.lowlevel.RunVar[_Outbox | None] | None = None


def _run_outbox() -> _Outbox:
    """The running trio run's outbox, created on first use."""
    import trio

    global _outboxes
    if _outboxes is None:
        _outboxes = trio.lowlevel.RunVar("corral_ssh_outbox", default=None)
    outbox = _outboxes.get()
    if outbox is None:
        outbox = _Outbox(trio.lowlevel.current_trio_token())
        _outboxes.set(outbox)
    return outbox
