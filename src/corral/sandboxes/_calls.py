"""One ``exec`` in flight, as the proxy and a built-in provider share it.

The proxy owns the rules of an ``exec`` (its ``timeout=``, its output limit);
the provider owns the mechanics (starting the command, feeding it, reading
its output, stopping it). :class:`ExecCall` is what passes between them, in
a context variable the proxy sets around the provider's ``exec``:

* the **output buffers**: the provider appends what the command prints to
  ``stdout`` and ``stderr`` (:class:`~corral._core._tail.TailBuffer` objects
  bounded by the exec output limit), so that when the proxy's timeout
  cancels the provider, what the command printed so far is still there for
  ``SandboxTimeoutError.truncated_output``, and the proxy can tell how much
  was printed in all;
* the **timeout clock**: the proxy's cancel scope, whose deadline the
  provider may hold back while it waits for something that is not the
  command running (:meth:`ExecCall.not_counting`: the local provider waiting
  for a subprocess slot, as ``subprocess()`` does not count that wait either).

Third-party providers need none of this: they return an ``ExecResult`` (or
raise ``TimeoutError``) and the proxy applies the same rules to what they
return, with the deadline counted from the call.
"""

from __future__ import annotations

import contextlib
import math
from contextvars import ContextVar
from typing import TYPE_CHECKING, final

import anyio

from .._core._tail import TailBuffer
from .._core._threads import soon_in_this_loop
from ._output_limits import max_exec_output_size

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["ExecCall", "current_exec_call", "exec_call"]


@final
class ExecCall:
    """The shared state of one ``exec``: output so far, limit, and timeout clock.

    Args:
        limit: Bytes of each stream to keep (the exec output limit).
        timeout: Seconds the command may run, or ``None``.

    Attributes:
        limit: As given.
        timeout: As given.
        stdout: What the command wrote to stdout (the last *limit* bytes).
        stderr: What the command wrote to stderr (the last *limit* bytes).
        scope: The cancel scope that enforces *timeout* (the proxy enters it).
        shared: Whether the provider took the call (with :func:`exec_call`),
            and so writes the command's output to the buffers.
        over_limit: Whether a stream passed *limit*, and the call was
            cancelled for it (through *scope*).
    """

    __slots__ = (
        "_paused",
        "limit",
        "over_limit",
        "scope",
        "shared",
        "stderr",
        "stdout",
        "timeout",
    )

    def __init__(self, limit: int, timeout: float | None) -> None:
        self.limit = limit
        self.timeout = timeout
        self.scope = anyio.CancelScope()
        # A stream past the limit stops the command at once (an endless
        # writer would otherwise run forever, only truncated); the buffers
        # may be filled from the SSH loop's thread, hence through the loop.
        stop = soon_in_this_loop(self._stop_over_limit)
        self.stdout = TailBuffer(limit, stop)
        self.stderr = TailBuffer(limit, stop)
        self.shared = False
        self.over_limit = False
        self._paused = 0

    def _stop_over_limit(self) -> None:
        self.over_limit = True
        self.scope.cancel("the command's output passed the exec output limit")

    def start_clock(self) -> None:
        """Start counting *timeout* now (the proxy calls this as it calls the provider)."""
        if self.timeout is not None:
            self.scope.deadline = anyio.current_time() + self.timeout

    @contextlib.contextmanager
    def not_counting(self) -> Iterator[None]:
        """Hold the timeout clock for the block: time spent in it does not count.

        For a provider waiting for something other than its command (a slot
        of a limit). Not a checkpoint. Blocks may nest.
        """
        if self.timeout is None:
            yield
            return
        remaining = self.scope.deadline - anyio.current_time()
        self._paused += 1
        self.scope.deadline = math.inf
        try:
            yield
        finally:
            self._paused -= 1
            if self._paused == 0:
                self.scope.deadline = anyio.current_time() + max(remaining, 0.0)

    def output_so_far(self) -> str | None:
        """What the command printed, stdout then stderr, decoded (undecodable bytes replaced).

        ``None`` when the provider does not share its output (it never took the call).
        """
        if not self.shared:
            return None
        out = self.stdout.value().decode("utf-8", errors="replace")
        err = self.stderr.value().decode("utf-8", errors="replace")
        return f"{out}{err}"


#: The ``exec`` the proxy is running in this context, if any.
current_exec_call: ContextVar[ExecCall | None] = ContextVar("corral.sandbox.exec", default=None)


def exec_call() -> ExecCall:
    """The running proxy's :class:`ExecCall`, or a fresh one for a call made without a proxy.

    A provider called directly (not through ``sandbox()``) gets buffers
    bounded by the exec output limit and no timeout: the contract's rules
    are the proxy's to enforce.

    Raises:
        ValueError: ``$CORRAL_SANDBOX_MAX_EXEC_OUTPUT_SIZE`` is not a positive integer.
    """
    call = current_exec_call.get()
    if call is None:
        call = ExecCall(max_exec_output_size(), None)
    call.shared = True
    return call
