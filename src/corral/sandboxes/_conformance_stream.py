"""The conformance suite's ``exec_remote`` cases (mixed into :class:`SandboxConformance`).

A provider on the base class's slow path (``exec`` only) passes the cases
that do not need output before the command ends; it declares
``"native_streaming"`` in ``lacks`` for the others.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from ._exec_remote import (
    ExecCompleted,
    ExecRemoteStreamingOptions,
    ExecStderr,
    ExecStdout,
)
from ._proxy import SandboxEnvironmentProxy

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ._conformance import Capability
    from ._environment import SandboxEnvironment
    from ._exec_remote import ExecOutput, ExecRemoteProcess

__all__ = ["StreamingConformance"]


def _marker() -> str:
    return f"300.{secrets.randbelow(10**8):08d}"


async def _events(process: ExecRemoteProcess) -> list[ExecOutput]:
    return [event async for event in process]


def _text(events: list[ExecOutput], kind: type[ExecStdout | ExecStderr]) -> str:
    return "".join(event.data for event in events if isinstance(event, kind))


class StreamingConformance:
    """``exec_remote``: events in order and as they come, stdin, kill, cancellation."""

    if TYPE_CHECKING:

        def requires(self, *needs: Capability) -> None: ...
        def sleeper(self, marker: str) -> list[str]: ...
        async def live_processes(self, env: SandboxEnvironment, marker: str) -> list[str]: ...
        async def wait_running(self, env: SandboxEnvironment, marker: str) -> None: ...
        async def make_fifo(self, env: SandboxEnvironment, path: str) -> None: ...
        async def cancel_once_running(
            self, env: SandboxEnvironment, marker: str, work: Callable[[], Awaitable[object]]
        ) -> bool: ...

    async def test_stream_events_and_exit_code(self, sandbox: SandboxEnvironment) -> None:
        self.requires("posix_shell")
        process = await sandbox.exec_remote(["sh", "-c", "echo out; echo err >&2; exit 7"])
        events = await _events(process)
        assert _text(events, ExecStdout) == "out\n"
        assert _text(events, ExecStderr) == "err\n"
        assert events[-1] == ExecCompleted(7)
        assert [e for e in events if isinstance(e, ExecCompleted)] == [ExecCompleted(7)]

    @pytest.mark.parametrize(("signal", "number"), [("KILL", 9), ("TERM", 15)])
    async def test_stream_signal_death_is_negative(
        self, sandbox: SandboxEnvironment, signal: str, number: int
    ) -> None:
        self.requires("posix_shell")
        process = await sandbox.exec_remote(["sh", "-c", f"kill -{signal} $$"])
        assert await _events(process) == [ExecCompleted(-number)]

    async def test_stream_first_event_before_the_command_goes_on(
        self, sandbox: SandboxEnvironment
    ) -> None:
        """The first line arrives while the command waits (on a FIFO the test opens later)."""
        self.requires("posix_shell", "special_files", "native_streaming")
        await self.make_fifo(sandbox, "gate")
        process = await sandbox.exec_remote(
            ["sh", "-c", "echo first; read x < gate; echo second >&2"]
        )
        with anyio.fail_after(30):
            assert await process.__anext__() == ExecStdout("first\n")
            # Only now does the command go on.
            await sandbox.exec(["sh", "-c", "echo go > gate"])
            assert await _events(process) == [ExecStderr("second\n"), ExecCompleted(0)]

    async def test_stream_split_utf8_character_is_whole(self, sandbox: SandboxEnvironment) -> None:
        """A character whose bytes come in two writes, a wait between them, comes whole."""
        self.requires("posix_shell", "special_files", "native_streaming")
        await self.make_fifo(sandbox, "gate")
        # "é" is C3 A9; "a" first, so that the first write is seen before the gate opens.
        script = "printf 'a\\303'; read x < gate; printf '\\251b'"
        process = await sandbox.exec_remote(["sh", "-c", script])
        with anyio.fail_after(30):
            assert await process.__anext__() == ExecStdout("a")
            await sandbox.exec(["sh", "-c", "echo go > gate"])
            events = await _events(process)
        assert _text(events, ExecStdout) == "éb"
        assert events[-1] == ExecCompleted(0)

    async def test_stream_cat_echoes_10_mib_in_order(self, sandbox: SandboxEnvironment) -> None:
        """What is written to stdin comes back in order, while it is being written."""
        self.requires("native_streaming")
        process = await sandbox.exec_remote(["cat"], ExecRemoteStreamingOptions(stdin_open=True))
        data = secrets.token_hex(5 * 1024 * 1024).encode()  # 10 MiB of text
        got: list[str] = []

        async def write() -> None:
            for start in range(0, len(data), 256 * 1024):
                await process.write_stdin(data[start : start + 256 * 1024])
            await process.close_stdin()

        with anyio.fail_after(120):
            async with anyio.create_task_group() as tg:
                tg.start_soon(write)
                async for event in process:
                    if isinstance(event, ExecStdout):
                        got.append(event.data)
                    else:
                        assert event == ExecCompleted(0)
        assert "".join(got).encode() == data

    async def test_stream_stdin_rules(self, sandbox: SandboxEnvironment) -> None:
        """Input first, then writes; a write after ``close_stdin`` or the end is refused."""
        process = await sandbox.exec_remote(
            ["cat"], ExecRemoteStreamingOptions(input="a", stdin_open=True)
        )
        await process.write_stdin("b")
        await process.write_stdin(b"c")
        await process.close_stdin()
        await process.close_stdin()  # again: nothing
        with pytest.raises(RuntimeError, match="closed"):
            await process.write_stdin("d")
        with anyio.fail_after(30):
            events = await _events(process)
        assert (_text(events, ExecStdout), events[-1]) == ("abc", ExecCompleted(0))
        with pytest.raises(RuntimeError, match="closed"):
            await process.write_stdin("late")
        done = await sandbox.exec_remote(["true"], ExecRemoteStreamingOptions(stdin_open=True))
        with anyio.fail_after(30):
            assert await _events(done) == [ExecCompleted(0)]
        with pytest.raises(RuntimeError, match="ended"):
            await done.write_stdin("late")
        plain = await sandbox.exec_remote(["cat"], ExecRemoteStreamingOptions(input="x"))
        with pytest.raises(RuntimeError, match="stdin_open=True"):
            await plain.write_stdin("y")
        with anyio.fail_after(30):
            assert _text(await _events(plain), ExecStdout) == "x"

    async def test_stream_kill_leaves_no_process(self, sandbox: SandboxEnvironment) -> None:
        self.requires("native_streaming")  # the slow path starts nothing before the iteration
        marker = _marker()
        process = await sandbox.exec_remote(self.sleeper(marker))
        with anyio.fail_after(60):
            await self.wait_running(sandbox, marker)
            await process.kill()
            await process.kill()  # idempotent
            assert await self.live_processes(sandbox, marker) == []
            assert [e async for e in process if isinstance(e, ExecCompleted)] == []

    async def test_stream_cancelled_reader_leaves_no_process(
        self, sandbox: SandboxEnvironment
    ) -> None:
        marker = _marker()
        process = await sandbox.exec_remote(self.sleeper(marker))

        with anyio.fail_after(60):
            assert await self.cancel_once_running(sandbox, marker, lambda: _events(process))
            assert await self.live_processes(sandbox, marker) == []

    async def test_stream_left_running_is_stopped_by_the_cleanup(
        self, sandbox: SandboxEnvironment, sandbox_env: SandboxEnvironment, sample_config: Any
    ) -> None:
        """A handle nobody iterates, killed, or waits for does not outlive its sample."""
        self.requires("native_streaming")
        provider = type(sandbox_env)
        marker = _marker()
        with anyio.fail_after(60):
            environments = await provider.sample_init("conformance", sample_config, {})
            try:
                env = SandboxEnvironmentProxy(next(iter(environments.values())))
                await env.exec_remote(self.sleeper(marker))
                await self.wait_running(sandbox, marker)
            finally:
                with anyio.CancelScope(shield=True):
                    await provider.sample_cleanup("conformance", sample_config, environments, True)
            assert await self.live_processes(sandbox, marker) == []

    async def test_stream_false_is_exec(self, sandbox: SandboxEnvironment) -> None:
        self.requires("posix_shell")
        result = await sandbox.exec_remote(["sh", "-c", "echo out; exit 3"], stream=False)
        assert (result.returncode, result.stdout) == (3, "out\n")
