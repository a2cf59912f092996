"""The sandbox proxy's ``exec_remote``: argument checks, routing, and the one event per process."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio.lowlevel
import pytest

from corral._state._events import SandboxEvent
from corral._state._transcript import Transcript, current_transcript
from corral.sandboxes._exec_remote import ExecFallbackProcess
from corral.sandboxes._exec_remote_record import RecordedProcess
from corral.sandboxes._memory import MemorySandboxEnvironment
from corral.sandboxes._proxy import SandboxEnvironmentProxy
from corral.util import (
    ExecCompleted,
    ExecOutput,
    ExecRemoteAwaitableOptions,
    ExecRemoteProcess,
    ExecRemoteStreamingOptions,
    ExecStderr,
    ExecStdout,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def record() -> Iterator[Transcript]:
    fresh = Transcript()
    token = current_transcript.set(fresh)
    try:
        yield fresh
    finally:
        current_transcript.reset(token)


def sandbox_events(record: Transcript) -> list[SandboxEvent]:
    return [e for e in record.events if isinstance(e, SandboxEvent)]


class _Scripted(ExecRemoteProcess):
    """A native handle that yields a fixed list of events."""

    def __init__(self, events: list[ExecOutput]) -> None:
        self.events = list(events)
        self.killed = 0

    async def __anext__(self) -> ExecOutput:
        await anyio.lowlevel.checkpoint()
        if self.killed or not self.events:
            raise StopAsyncIteration
        return self.events.pop(0)

    @property
    def pid(self) -> int:
        return 42

    async def write_stdin(self, data: str | bytes) -> None:
        await anyio.lowlevel.checkpoint()

    async def close_stdin(self) -> None:
        await anyio.lowlevel.checkpoint()

    async def kill(self) -> None:
        await anyio.lowlevel.checkpoint()
        self.killed += 1


class _Native(MemorySandboxEnvironment):
    calls: list[tuple[list[str], Any]]
    script: list[ExecOutput]

    async def exec_remote(self, cmd, options=None, *, stream=True):  # type: ignore[no-untyped-def]
        await anyio.lowlevel.checkpoint()
        self.calls.append((cmd, options))
        return _Scripted(self.script)


def _native(script: list[ExecOutput]) -> tuple[_Native, SandboxEnvironmentProxy]:
    env = _Native()
    env.calls = []
    env.script = script
    return env, SandboxEnvironmentProxy(env)


async def test_arguments_checked_naming_the_parameter() -> None:
    proxy = SandboxEnvironmentProxy(MemorySandboxEnvironment())
    with pytest.raises(TypeError, match="list of arguments"):
        await proxy.exec_remote("echo hi")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=r"options\.cwd"):
        await proxy.exec_remote(["true"], ExecRemoteStreamingOptions(cwd=3))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"options\.env"):
        await proxy.exec_remote(["true"], ExecRemoteStreamingOptions(env={"-S": "x"}))
    with pytest.raises(ValueError, match=r"options\.timeout"):
        await proxy.exec_remote(["true"], ExecRemoteAwaitableOptions(timeout=-1), stream=False)
    with pytest.raises(TypeError, match="options must be"):
        await proxy.exec_remote(["true"], {"cwd": "/"})  # type: ignore[call-overload]


async def test_provider_without_override_gets_the_slow_path() -> None:
    proxy = SandboxEnvironmentProxy(MemorySandboxEnvironment())
    assert isinstance(await proxy.exec_remote(["true"]), ExecFallbackProcess)


async def test_native_handle_is_used_and_recorded_once(record: Transcript) -> None:
    env, proxy = _native([ExecStdout("out"), ExecStderr("err"), ExecCompleted(3)])
    options = ExecRemoteStreamingOptions(cwd="/w", env={"A": "1"})
    process = await proxy.exec_remote(["echo", "a b"], options)
    assert isinstance(process, RecordedProcess)
    assert process.pid == 42
    assert env.calls == [(["echo", "a b"], options)]
    events = [event async for event in process]
    assert events == [ExecStdout("out"), ExecStderr("err"), ExecCompleted(3)]
    await process.kill()  # after the end: no second event
    (event,) = sandbox_events(record)
    assert event.action == "exec"
    assert event.cmd == "echo 'a b'"
    assert event.result == 3
    assert event.output == "err\n\nout"
    assert event.options == {"cwd": "/w", "env": {"A": "1"}}


async def test_killed_native_handle_recorded_without_result(record: Transcript) -> None:
    _env, proxy = _native([ExecStdout("partial"), ExecCompleted(0)])
    process = await proxy.exec_remote(["sleep", "9"])
    assert await process.__anext__() == ExecStdout("partial")
    await process.kill()
    await process.kill()
    assert [event async for event in process] == []
    (event,) = sandbox_events(record)
    assert event.result is None
    assert event.output == "partial"


async def test_stream_false_goes_through_exec_even_for_native(record: Transcript) -> None:
    env, proxy = _native([])
    result = await proxy.exec_remote(["echo", "hi"], stream=False)
    assert result.stdout == "hi\n"
    assert env.calls == []
    assert len(sandbox_events(record)) == 1
