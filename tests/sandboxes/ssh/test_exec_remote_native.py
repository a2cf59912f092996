"""Native ``exec_remote`` of the local and ssh providers: slots and the output bound.

The behaviour every provider shares (events, stdin, kill, cancellation,
cleanup) is in the conformance suite (``_conformance_stream.py``).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import anyio
import psutil
import pytest

import corral
import corral.util
from corral._core._settings import subprocess_limiter
from corral._process._stream import BUFFER_LIMIT
from corral._state._events import SandboxEvent
from corral.sandboxes._local import LocalSandboxEnvironment
from corral.sandboxes._proxy import SandboxEnvironmentProxy
from corral.sandboxes._ssh._environment import SSHSandboxEnvironment
from corral.util import (
    ExecCompleted,
    ExecRemoteStreamingOptions,
    ExecStdout,
    SandboxEnvironment,
)
from tests.support.sshd import OpenSSHServer

pytestmark = pytest.mark.anyio

_MIB = 1024 * 1024
_GIB = 1024 * _MIB


@pytest.fixture
async def local() -> AsyncIterator[SandboxEnvironment]:
    environments = await LocalSandboxEnvironment.sample_init("exec_remote", None, {})
    try:
        yield SandboxEnvironmentProxy(environments["default"])
    finally:
        await LocalSandboxEnvironment.sample_cleanup("exec_remote", None, environments, False)


@pytest.fixture
async def ssh(sshd: OpenSSHServer) -> AsyncIterator[SandboxEnvironment]:
    config = sshd.sandbox_config()
    environments = await SSHSandboxEnvironment.sample_init("exec_remote", config, {})
    try:
        yield SandboxEnvironmentProxy(environments["default"])
    finally:
        await SSHSandboxEnvironment.sample_cleanup("exec_remote", config, environments, False)


@pytest.fixture(params=["local", "ssh"])
def env(request: pytest.FixtureRequest) -> SandboxEnvironment:
    env: SandboxEnvironment = request.getfixturevalue(request.param)
    return env


def _written(pid: int) -> int:
    """Bytes the process *pid* has written so far (``/proc/PID/io``)."""
    try:
        f = open(f"/proc/{pid}/io")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        raise AssertionError(f"process {pid} ran to its end: nothing held it back") from None
    with f:
        for line in f:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    raise AssertionError(f"no wchar in /proc/{pid}/io")


async def _until_stalled(pid: int) -> int:
    """Wait until *pid* has written nothing more for half a second; return what it wrote.

    What is waited for is the absence of an event (the writer blocked on a
    full pipe or SSH window), which no call can await.
    """
    last = -1
    with anyio.fail_after(120):
        while True:
            now = _written(pid)
            if now == last and now > 0:
                return now
            last = now
            await anyio.sleep(0.5)


async def test_a_consumer_that_never_reads_stalls_the_command(env: SandboxEnvironment) -> None:
    """The command wanting to write 1 GiB is held at the bound; the harness does not grow.

    The ssh test server runs on this machine, so the remote command's
    ``/proc`` entry is readable here too.
    """
    rss = psutil.Process().memory_info().rss
    process = await env.exec_remote(["head", "-c", str(_GIB), "/dev/zero"])
    written = await _until_stalled(process.pid)
    grown = psutil.Process().memory_info().rss - rss
    # The buffer, the kernel's pipe (or the SSH window and socket buffers): a few MiB.
    assert written < 64 * _MIB, written
    assert grown < 64 * _MIB, grown
    await process.kill()


async def test_a_slow_consumer_gets_everything_within_the_bound(
    local: SandboxEnvironment,
) -> None:
    """1 GiB through the iterator; the harness never holds more than the bound."""
    peak = 0
    rss = psutil.Process().memory_info().rss
    process = await local.exec_remote(["head", "-c", str(_GIB), "/dev/zero"])
    total = 0
    events = 0
    async for event in process:
        if isinstance(event, ExecStdout):
            assert len(event.data) <= BUFFER_LIMIT + 64 * 1024
            total += len(event.data)
            events += 1
            if events % 256 == 0:
                peak = max(peak, psutil.Process().memory_info().rss - rss)
        else:
            assert event == ExecCompleted(0)
    assert total == _GIB
    assert peak < 64 * _MIB, peak


async def test_a_streamed_command_holds_a_slot_until_it_ends(local: SandboxEnvironment) -> None:
    limiter = subprocess_limiter()
    before = limiter.in_use
    process = await local.exec_remote(["cat"], ExecRemoteStreamingOptions(stdin_open=True))
    assert limiter.in_use == before + 1
    free = await local.exec_remote(
        ["cat"], ExecRemoteStreamingOptions(stdin_open=True, concurrency=False)
    )
    assert limiter.in_use == before + 1
    await process.close_stdin()
    assert [e async for e in process] == [ExecCompleted(0)]
    assert limiter.in_use == before
    await free.kill()
    assert limiter.in_use == before


async def test_the_handle_keeps_no_fd_after_the_end(local: SandboxEnvironment) -> None:
    fds = len(os.listdir("/proc/self/fd"))
    process = await local.exec_remote(
        ["sh", "-c", "echo x; cat"], ExecRemoteStreamingOptions(stdin_open=True)
    )
    assert await process.__anext__() == ExecStdout("x\n")
    await process.kill()
    assert len(os.listdir("/proc/self/fd")) == fds


@pytest.mark.parametrize("provider", ["local", "ssh"])
async def test_a_process_left_running_is_recorded_when_the_sample_ends(
    provider: str, request: pytest.FixtureRequest, no_leftovers: str
) -> None:
    """The runtime kills it through its handle before the cleanup: one event, no exit code."""
    spec: Any = "local"
    if provider == "ssh":
        server: OpenSSHServer = request.getfixturevalue("sshd")
        spec = ("ssh", server.sandbox_config())
    async with corral.task("t", sandbox=spec) as task, task.sample(1) as sample:
        await corral.util.sandbox().exec_remote(["sleep", no_leftovers])
    events = [e for e in sample.transcript.events if isinstance(e, SandboxEvent)]
    assert [(e.action, e.cmd, e.result) for e in events] == [
        ("exec", f"sleep {no_leftovers}", None)
    ]


async def test_the_whole_input_first_then_the_output(env: SandboxEnvironment) -> None:
    """inspect_ai's documented pattern: write everything, close, then iterate.

    Half a MiB is more than the pipes hold (locally 64 KiB each way): it goes
    through because, while nobody iterates, the writer reads the output into
    the handle's buffer.
    """
    data = os.urandom(256 * 1024).hex().encode()
    process = await env.exec_remote(["cat"], ExecRemoteStreamingOptions(stdin_open=True))
    with anyio.fail_after(60):
        for start in range(0, len(data), 64 * 1024):
            await process.write_stdin(data[start : start + 64 * 1024])
        await process.close_stdin()
        events = [event async for event in process]
    assert "".join(e.data for e in events if isinstance(e, ExecStdout)).encode() == data
    assert events[-1] == ExecCompleted(0)
