"""SIGTERM and SIGHUP end a harness as Ctrl-C does: cancelled, cleaned up, then gone.

``docker stop``, Kubernetes, systemd and ``timeout`` send SIGTERM, and a
closed terminal sends SIGHUP. Their default action ends the process at
once, with no ``finally`` run, so every sandbox and subprocess is left
behind. While a task scope that handles signals is open in the main
thread, this module replaces the default action of each of these signals
(and only the default: a handler the program installed itself, or
``SIG_IGN`` as ``nohup`` sets it, is kept as it is) with one that cancels
every such open task scope, from its own event loop. The scopes unwind as
on any cancellation: samples are cleaned up (``interrupted=True``),
process groups terminated and reaped. When the last of them has exited,
the previous handlers are back, and the signal is raised again with its
default action, so the process ends the way a process killed by that
signal ends (status ``-15`` to its parent, ``143`` in a shell), after the
``atexit`` hooks (as Python does for ``KeyboardInterrupt``); code after the
``async with`` block does not run. A second signal while the scopes unwind
ends the process at once.

Written by hand: trio's ``open_signal_receiver`` is a receiver per call and
a task to read it, while this must span every task scope of the process, on
either backend; under asyncio it installs through the loop's
``add_signal_handler``, so that the loop wakes whichever thread the kernel
hands the signal to.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

import sniffio

from .._core._threads import soon_in_this_loop

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from types import FrameType

    from anyio import CancelScope

__all__ = ["HANDLED_SIGNALS", "SIGNALS_ENV", "cancelled_by_signals", "handles_signals"]

#: The signals a task scope handles.
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
#: ``CORRAL_HANDLE_SIGNALS=0`` leaves every signal's handler alone.
SIGNALS_ENV = "CORRAL_HANDLE_SIGNALS"

# Only the main thread changes these (signal handlers run there too), so no lock.
_open: dict[object, Callable[[], None]] = {}
#: What was installed for each signal taken over: (the asyncio loop, or None, and the handler).
_replaced: dict[int, tuple[Any, Any]] = {}
_received: list[int] = []


def handles_signals() -> bool:
    """Whether a task scope opened here and now would handle SIGTERM and SIGHUP."""
    if os.environ.get(SIGNALS_ENV, "1").strip() == "0":
        return False
    return threading.current_thread() is threading.main_thread()


def _die(signum: int, *, run_hooks: bool = True) -> None:
    """End the process as *signum*'s default action does, once exit hooks have run.

    As Python does when ``KeyboardInterrupt`` ends a program: the ``atexit``
    hooks run first (the trace file's among them), then the process kills
    itself with the signal.
    """
    if run_hooks:
        import atexit

        with contextlib.suppress(Exception):
            atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signum})
    os.kill(os.getpid(), signum)
    os._exit(128 + signum)  # only if the signal did not end us


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if _received:
        _die(signum, run_hooks=False)  # a second signal while the scopes unwind: now
    _received.append(signum)
    for cancel in tuple(_open.values()):
        cancel()


def _threadsafe_cancel(scope: CancelScope, reason: str) -> Callable[[], None]:
    """A function that cancels *scope* from a signal handler, through its event loop."""
    return soon_in_this_loop(functools.partial(scope.cancel, reason))


def _install() -> None:
    """Take over each handled signal whose action is the default.

    Under asyncio the loop's own ``add_signal_handler`` does it: a signal that
    the kernel hands to another thread (the trace file's flusher, a worker)
    then still wakes the loop, through the wakeup fd the loop sets. Trio sets
    a wakeup fd of its own whenever it runs in the main thread.
    """
    loop = None
    if sniffio.current_async_library() != "trio":
        import asyncio

        loop = asyncio.get_running_loop()
    for signum in HANDLED_SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_DFL:
            continue
        if loop is None:
            signal.signal(signum, _on_signal)
        else:
            loop.add_signal_handler(signum, _on_signal, signum, None)
        _replaced[signum] = (loop, signal.getsignal(signum))


def _restore() -> None:
    for signum, (loop, installed) in _replaced.items():
        if signal.getsignal(signum) is not installed:
            continue  # the program replaced ours: leave its handler
        if loop is not None and not loop.is_closed():
            loop.remove_signal_handler(signum)  # back to SIG_DFL
        else:
            signal.signal(signum, signal.SIG_DFL)
    _replaced.clear()


@contextlib.contextmanager
def cancelled_by_signals(scope: CancelScope, name: str) -> Iterator[None]:
    """Cancel *scope* on SIGTERM or SIGHUP while the block runs; then end the process.

    Call :func:`handles_signals` first: this must run in the main thread,
    inside an event loop. The first block entered installs the handlers, the
    last one to exit restores them and, if a signal came, raises it again.
    """
    key = object()
    if not _open:
        _received.clear()
        _install()
    _open[key] = _threadsafe_cancel(scope, f"task {name!r} got a termination signal")
    try:
        yield
    finally:
        del _open[key]
        if not _open:
            _restore()
            if _received:
                _die(_received[0])
