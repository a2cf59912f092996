"""The sandbox proxy's wrapper around a provider's native ``exec_remote`` handle.

:class:`RecordedProcess` forwards everything to the provider's
:class:`~corral.util.ExecRemoteProcess` and, on the way, keeps the tail of
each output stream (within ``max_exec_output_size()`` bytes), so that the
process is recorded as **one** :class:`~corral.util.SandboxEvent` (action
``"exec"``, with its exit code and output) when its
:class:`~corral.util.ExecCompleted` event passes, or when it is killed
first (then without an exit code). Its start and its end are traced as
``"Sandbox"`` messages.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .._core._tail import TailBuffer
from ..tracing._actions import trace_message
from ._exec_remote import ExecCompleted, ExecRemoteProcess, ExecStderr, ExecStdout

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._exec_remote import ExecOutput

__all__ = ["RecordedProcess"]

_logger = logging.getLogger("corral.sandbox")


class RecordedProcess(ExecRemoteProcess):
    """*inner*, recorded once by *record* (called with the event's last fields).

    Args:
        inner: The provider's handle.
        command: The command as the event and the trace show it.
        limit: Bytes of each stream kept for the event.
        record: Called once with ``result`` (the exit code or ``None``) and
            ``output`` (the kept text).
        live: The set it is in while the process may still run (the proxy's,
            which kills those left when the sample ends).
    """

    def __init__(
        self,
        inner: ExecRemoteProcess,
        command: str,
        limit: int,
        record: Callable[..., Any],
        live: set[RecordedProcess],
    ) -> None:
        self._inner = inner
        self._live = live
        live.add(self)
        self._command = command
        self._stdout = TailBuffer(limit)
        self._stderr = TailBuffer(limit)
        self._record: Callable[..., Any] | None = record
        trace_message(_logger, "Sandbox", "exec_remote %s (started)", command)

    def __repr__(self) -> str:
        return f"<RecordedProcess of {self._inner!r}>"

    @property
    def inner(self) -> ExecRemoteProcess:
        """The provider's handle."""
        return self._inner

    @property
    def pid(self) -> int:
        return self._inner.pid

    async def __anext__(self) -> ExecOutput:
        try:
            event = await self._inner.__anext__()
        except StopAsyncIteration:
            self._finish(None)  # killed elsewhere (the provider's cleanup, say)
            raise
        if isinstance(event, ExecStdout):
            self._stdout.append(event.data.encode("utf-8"))
        elif isinstance(event, ExecStderr):
            self._stderr.append(event.data.encode("utf-8"))
        elif isinstance(event, ExecCompleted):
            self._finish(event.exit_code)
        return event

    def _finish(self, result: int | None) -> None:
        self._live.discard(self)
        record, self._record = self._record, None
        if record is None:
            return
        out = self._stdout.value().decode("utf-8", errors="replace")
        err = self._stderr.value().decode("utf-8", errors="replace")
        record(result=result, output=f"{err}\n\n{out}" if err else out)
        trace_message(
            _logger,
            "Sandbox",
            "exec_remote %s (%s)",
            self._command,
            "killed" if result is None else f"exit {result}",
        )

    async def write_stdin(self, data: str | bytes) -> None:
        await self._inner.write_stdin(data)

    async def close_stdin(self) -> None:
        await self._inner.close_stdin()

    async def kill(self) -> None:
        try:
            await self._inner.kill()
        finally:
            self._finish(None)
