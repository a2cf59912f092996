"""``exec_remote``: its types, and the base class's slow path over ``exec``.

The in-memory provider has no native ``exec_remote``, so it runs the
fallback (the local provider's native one is tested in
``test_exec_remote_local.py``): the command runs through the proxy's
``exec`` when the iteration begins and its output comes as one stdout and
one stderr event.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import anyio
import pytest

from corral.sandboxes._exec_remote import ExecFallbackProcess
from corral.sandboxes._local import LocalSandboxEnvironment
from corral.sandboxes._memory import MemorySandboxEnvironment
from corral.sandboxes._proxy import SandboxEnvironmentProxy
from corral.util import (
    ExecCompleted,
    ExecOutput,
    ExecRemoteAwaitableOptions,
    ExecRemoteProcess,
    ExecRemoteStreamingOptions,
    ExecResult,
    ExecStderr,
    ExecStdout,
    SandboxEnvironment,
    SandboxTimeoutError,
)

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["memory"])
async def env(request: pytest.FixtureRequest) -> AsyncIterator[SandboxEnvironment]:
    """A proxied environment of each provider, as ``sandbox()`` would give it."""
    provider: type[SandboxEnvironment] = (
        MemorySandboxEnvironment if request.param == "memory" else LocalSandboxEnvironment
    )
    environments = await provider.sample_init("exec_remote", None, {})
    try:
        yield SandboxEnvironmentProxy(environments["default"])
    finally:
        await provider.sample_cleanup("exec_remote", None, environments, False)


async def _events(process: ExecRemoteProcess) -> list[ExecOutput]:
    return [event async for event in process]


# The types


def test_event_fields() -> None:
    assert [f.name for f in dataclasses.fields(ExecStdout)] == ["data"]
    assert [f.name for f in dataclasses.fields(ExecStderr)] == ["data"]
    assert [f.name for f in dataclasses.fields(ExecCompleted)] == ["exit_code"]
    assert (ExecStdout.type, ExecStderr.type, ExecCompleted.type) == (
        "stdout",
        "stderr",
        "completed",
    )
    assert ExecStdout("a") == ExecStdout(data="a")
    assert ExecStdout("a") != ExecStderr("a")  # type: ignore[comparison-overlap]
    assert ExecCompleted(0).success
    assert not ExecCompleted(exit_code=3).success


def test_option_defaults() -> None:
    streaming = ExecRemoteStreamingOptions()
    awaitable = ExecRemoteAwaitableOptions()
    for options in (streaming, awaitable):
        assert options.input is None
        assert options.cwd is None
        assert options.env is None
        assert options.user is None
        assert options.concurrency is True
        assert options.poll_interval is None
        assert options.poll_timeout is None
        assert options.poll_timeout_retry is None
        assert options.poll_timeout_recovery is None
    assert streaming.stdin_open is False
    assert awaitable.timeout is None
    assert not hasattr(streaming, "timeout")
    assert not hasattr(awaitable, "stdin_open")


def test_option_order_and_keyword_only() -> None:
    # As inspect_ai's: poll_timeout_recovery is keyword-only, so the mode's own field is last
    # among the positional ones.
    options = ExecRemoteStreamingOptions("in", "/w", {"A": "1"}, "u", 1.0, 2.0, True, False, True)
    assert (options.input, options.cwd, options.user, options.concurrency) == (
        "in",
        "/w",
        "u",
        False,
    )
    assert options.stdin_open is True
    with pytest.raises(TypeError):
        ExecRemoteAwaitableOptions(None, None, None, None, None, None, None, True, 5.0, 1.0)  # type: ignore[call-arg]
    assert ExecRemoteAwaitableOptions(timeout=2.5, poll_timeout_recovery=1.0).timeout == 2.5


def test_options_reject_contradiction() -> None:
    with pytest.raises(ValueError, match="poll_timeout_recovery"):
        ExecRemoteStreamingOptions(poll_timeout_retry=False, poll_timeout_recovery=10.0)


def test_process_is_abstract() -> None:
    with pytest.raises(TypeError):
        ExecRemoteProcess()  # type: ignore[abstract]


# The fallback, through the memory and the local provider


async def test_events_in_order(env: SandboxEnvironment) -> None:
    # The memory sh has no redirections: its stderr comes from an unknown command.
    assert isinstance(env, SandboxEnvironmentProxy)
    memory = isinstance(env.inner, MemorySandboxEnvironment)
    script = "echo out; nosuch; exit 3" if memory else "echo out; echo err 1>&2; exit 3"
    process = await env.exec_remote(["sh", "-c", script])
    assert isinstance(process, ExecFallbackProcess)
    events = await _events(process)
    assert [type(event) for event in events] == [ExecStdout, ExecStderr, ExecCompleted]
    assert events[0] == ExecStdout("out\n")
    assert isinstance(events[1], ExecStderr)
    assert events[1].data.strip() in ("err", "nosuch: command not found")
    assert events[2] == ExecCompleted(3)
    with pytest.raises(RuntimeError, match="iterated once"):  # as in inspect_ai
        await _events(process)


async def test_no_empty_events(env: SandboxEnvironment) -> None:
    assert await _events(await env.exec_remote(["true"])) == [ExecCompleted(0)]


async def test_options_reach_exec(env: SandboxEnvironment) -> None:
    options = ExecRemoteStreamingOptions(input="piped\n", env={"CORRAL_X": "x1"})
    assert await _events(await env.exec_remote(["cat"], options)) == [
        ExecStdout("piped\n"),
        ExecCompleted(0),
    ]
    printenv = await env.exec_remote(["printenv", "CORRAL_X"], options)
    assert (await _events(printenv))[0] == ExecStdout("x1\n")


async def test_stream_false_returns_exec_result(env: SandboxEnvironment) -> None:
    result = await env.exec_remote(["echo", "hi"], stream=False)
    assert isinstance(result, ExecResult)
    assert (result.success, result.returncode, result.stdout) == (True, 0, "hi\n")
    options = ExecRemoteAwaitableOptions(input="abc")
    assert (await env.exec_remote(["cat"], options, stream=False)).stdout == "abc"


async def test_stream_false_timeout_keeps_partial_output(env: SandboxEnvironment) -> None:
    options = ExecRemoteAwaitableOptions(timeout=0.5)
    with anyio.fail_after(20):
        with pytest.raises(SandboxTimeoutError) as caught:
            await env.exec_remote(["sh", "-c", "echo early; sleep 30"], options, stream=False)
    assert isinstance(caught.value, TimeoutError)
    assert caught.value.truncated_output is not None
    assert "early" in caught.value.truncated_output


async def test_stdin_open_collects_until_iteration(env: SandboxEnvironment) -> None:
    options = ExecRemoteStreamingOptions(input="a", stdin_open=True)
    process = await env.exec_remote(["cat"], options)
    await process.write_stdin("b")
    await process.write_stdin(b"c\n")
    await process.close_stdin()
    await process.close_stdin()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        await process.write_stdin("d")
    assert await _events(process) == [ExecStdout("abc\n"), ExecCompleted(0)]
    with pytest.raises(RuntimeError, match="closed"):  # the caller's doing comes first
        await process.write_stdin("e")
    done = await env.exec_remote(["true"], ExecRemoteStreamingOptions(stdin_open=True))
    assert await _events(done) == [ExecCompleted(0)]
    with pytest.raises(RuntimeError, match="ended"):
        await done.write_stdin("e")


async def test_stdin_needs_stdin_open(env: SandboxEnvironment) -> None:
    process = await env.exec_remote(["cat"])
    with pytest.raises(RuntimeError, match="stdin_open=True"):
        await process.write_stdin("x")
    with pytest.raises(RuntimeError, match="stdin_open=True"):
        await process.close_stdin()
    with pytest.raises(RuntimeError, match="process id"):
        _ = process.pid
    await process.kill()


async def test_kill_before_iteration_is_idempotent(env: SandboxEnvironment) -> None:
    process = await env.exec_remote(["echo", "never"])
    await process.kill()
    await process.kill()
    assert await _events(process) == []
    await process.kill()


async def test_kill_during_iteration(env: SandboxEnvironment) -> None:
    process = await env.exec_remote(["sleep", "30"])
    events: list[ExecOutput] = []
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:

            async def consume() -> None:
                events.extend(await _events(process))

            tg.start_soon(consume)
            await anyio.sleep(0.2)
            await process.kill()
            await process.kill()
    assert events == []
    await process.kill()


async def test_cancelling_the_consumer_stops_the_command(env: SandboxEnvironment) -> None:
    process = await env.exec_remote(["sleep", "30"])
    with anyio.fail_after(20):
        with anyio.move_on_after(0.2) as scope:
            await _events(process)
    assert scope.cancelled_caught
    with pytest.raises(StopAsyncIteration):  # killed: nothing more
        await process.__anext__()
    await process.kill()


async def test_bad_arguments(env: SandboxEnvironment) -> None:
    with pytest.raises(TypeError, match="cmd"):
        await env.exec_remote("echo hi")  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="cmd"):
        await env.exec_remote([])
    with pytest.raises(TypeError, match="options"):
        await env.exec_remote(["true"], {"timeout": 1})  # type: ignore[call-overload]
