"""The local sandbox's native ``exec_remote`` handle, over the runtime's streaming process.

:class:`LocalProcess` adapts a :class:`~corral._process._stream.StreamingProcess`
to :class:`~corral.util.ExecRemoteProcess`. See
:meth:`~corral.sandboxes._local.LocalSandboxEnvironment.exec_remote`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._process._stream import start_streaming
from ._exec_remote import ExecRemoteProcess, chunk_event, stdin_bytes

if TYPE_CHECKING:
    from .._process._stream import StreamingProcess
    from .._process._subprocess import Command
    from ._exec_remote import ExecOutput

__all__ = ["LocalProcess", "start_local"]


class LocalProcess(ExecRemoteProcess):
    """A command of the local sandbox, streamed; see ``LocalSandboxEnvironment.exec_remote``."""

    def __init__(self, process: StreamingProcess, keep_stdin: bool) -> None:
        self._process = process
        self._keep_stdin = keep_stdin

    def __repr__(self) -> str:
        return f"<LocalProcess {self._process!r}>"

    @property
    def pid(self) -> int:
        return self._process.pid

    async def __anext__(self) -> ExecOutput:
        return chunk_event(await self._process.next_chunk())

    async def write_stdin(self, data: str | bytes) -> None:
        await self._process.write_stdin(stdin_bytes(self._keep_stdin, "write_stdin", data))

    async def close_stdin(self) -> None:
        stdin_bytes(self._keep_stdin, "close_stdin")
        await self._process.close_stdin()

    async def kill(self) -> None:
        await self._process.kill()


async def start_local(
    processes: set[StreamingProcess], command: Command, *, keep_stdin: bool, slot: bool
) -> LocalProcess:
    """Start *command*, holding a ``"subprocesses"`` slot with *slot* until it ends.

    The process is in *processes* (the sandbox's, for its cleanup) until it ends.
    """
    box: list[StreamingProcess] = []

    def on_end() -> None:
        if box:
            processes.discard(box[0])

    process = await start_streaming(command, keep_stdin=keep_stdin, slot=slot, on_end=on_end)
    box.append(process)
    processes.add(process)
    return LocalProcess(process, keep_stdin)
