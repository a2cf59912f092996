"""The local provider's native ``exec_remote``: real processes, streamed as they write."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from corral.sandboxes._local import LocalSandboxEnvironment
from corral.sandboxes._proxy import SandboxEnvironmentProxy
from corral.util import (
    ExecCompleted,
    ExecRemoteStreamingOptions,
    ExecStderr,
    ExecStdout,
    SandboxEnvironment,
)
from tests.support.fifo import Fifo
from tests.support.processes import processes_matching, unique_sleep, wait_gone

pytestmark = pytest.mark.anyio


@pytest.fixture
async def env() -> AsyncIterator[SandboxEnvironment]:
    environments = await LocalSandboxEnvironment.sample_init("exec_remote", None, {})
    try:
        yield SandboxEnvironmentProxy(environments["default"])
    finally:
        await LocalSandboxEnvironment.sample_cleanup("exec_remote", None, environments, False)


async def test_first_line_arrives_before_the_command_goes_on(
    env: SandboxEnvironment, tmp_path: Path
) -> None:
    gate = Fifo(tmp_path / "gate")
    script = f"echo first; read x < '{gate.path}'; echo second 1>&2"
    process = await env.exec_remote(["sh", "-c", script])
    assert process.pid > 0
    assert await process.__anext__() == ExecStdout("first\n")
    gate.release()  # the command blocks until the first line was received
    assert [e async for e in process] == [ExecStderr("second\n"), ExecCompleted(0)]


async def test_cat_echoes_10_mib_in_order(env: SandboxEnvironment) -> None:
    process = await env.exec_remote(["cat"], ExecRemoteStreamingOptions(stdin_open=True))
    data = bytes(range(256)).hex().encode() * (10 * 1024 * 1024 // 512)
    got: list[str] = []

    async def write() -> None:
        for start in range(0, len(data), 100_000):
            await process.write_stdin(data[start : start + 100_000])
        await process.close_stdin()

    async with anyio.create_task_group() as tg:
        tg.start_soon(write)
        async for event in process:
            if isinstance(event, ExecStdout):
                got.append(event.data)
            else:
                assert event == ExecCompleted(0)
    assert "".join(got).encode() == data
    with pytest.raises(RuntimeError, match="ended"):
        await process.write_stdin("late")


async def test_write_after_close_raises(env: SandboxEnvironment) -> None:
    process = await env.exec_remote(["cat"], ExecRemoteStreamingOptions(input="a", stdin_open=True))
    await process.write_stdin("b")
    await process.close_stdin()
    with pytest.raises(RuntimeError, match="closed"):
        await process.write_stdin("c")
    assert [e async for e in process] == [ExecStdout("ab"), ExecCompleted(0)]


async def test_without_stdin_open_writing_raises(env: SandboxEnvironment) -> None:
    process = await env.exec_remote(["cat"], ExecRemoteStreamingOptions(input="x"))
    with pytest.raises(RuntimeError, match="stdin_open"):
        await process.write_stdin("y")
    assert [e async for e in process] == [ExecStdout("x"), ExecCompleted(0)]


async def test_kill_stops_the_whole_group(env: SandboxEnvironment) -> None:
    marker = unique_sleep()
    process = await env.exec_remote(["sh", "-c", f"sleep {marker} & sleep {marker}; wait"])
    while len(processes_matching(marker)) < 2:  # noqa: ASYNC110 - no readiness signal from sleep
        await anyio.sleep(0.01)
    await process.kill()
    await process.kill()
    assert wait_gone(processes_matching(marker), timeout=5) == []
    assert processes_matching(marker) == []
    assert [e async for e in process] == []


async def test_cleanup_stops_a_running_process(tmp_path: Path) -> None:
    marker = unique_sleep()
    ready = Fifo(tmp_path / "ready")
    environments = await LocalSandboxEnvironment.sample_init("exec_remote", None, {})
    env = SandboxEnvironmentProxy(environments["default"])
    await env.exec_remote(["sh", "-c", f"sleep {marker} & {ready.shell_ready()}; wait"])
    await ready.wait()
    await LocalSandboxEnvironment.sample_cleanup("exec_remote", None, environments, True)
    assert processes_matching(marker) == []


async def test_cancelling_the_reader_stops_the_process(
    env: SandboxEnvironment, tmp_path: Path
) -> None:
    marker = unique_sleep()
    ready = Fifo(tmp_path / "ready")
    process = await env.exec_remote(["sh", "-c", f"{ready.shell_ready()}; sleep {marker}"])
    async with anyio.create_task_group() as tg:

        async def read() -> None:
            async for _ in process:
                pass

        tg.start_soon(read)
        await ready.wait()
        tg.cancel_scope.cancel()
    assert processes_matching(marker) == []


@pytest.mark.parametrize(("script", "code"), [("exit 7", 7), ("kill -9 $$", -9), ("true", 0)])
async def test_exit_codes(env: SandboxEnvironment, script: str, code: int) -> None:
    process = await env.exec_remote(["sh", "-c", script])
    assert [e async for e in process] == [ExecCompleted(code)]


async def test_split_utf8_character_is_intact(env: SandboxEnvironment, tmp_path: Path) -> None:
    gate = Fifo(tmp_path / "gate")
    # "é" is C3 A9: the first byte, a pause the test ends, then the second.
    script = f"printf '\\303'; read x < '{gate.path}'; printf '\\251'"
    process = await env.exec_remote(["sh", "-c", script])
    async with anyio.create_task_group() as tg:
        tg.start_soon(anyio.to_thread.run_sync, lambda: None)
        gate.release()
    events = [e async for e in process]
    assert "".join(e.data for e in events if isinstance(e, ExecStdout)) == "é"
    assert events[-1] == ExecCompleted(0)


async def test_concurrency_false_takes_no_slot(env: SandboxEnvironment) -> None:
    process = await env.exec_remote(["echo", "x"], ExecRemoteStreamingOptions(concurrency=False))
    assert [e async for e in process] == [ExecStdout("x\n"), ExecCompleted(0)]
