"""Leaving an ``async for`` over an ``exec_remote`` handle early kills the process.

Real samples (``corral.task`` / ``task.sample``) with the local and the ssh
provider (a real sshd on loopback: its processes are on this machine, found by
a marker in their command line). What is checked is that the process is gone
while the sample still runs, not only once its sandboxes are cleaned up.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

import corral
from corral._core._procfs import cmdline
from corral._state._events import SandboxEvent
from corral.util import ExecCompleted, ExecRemoteProcess, ExecStdout, sandbox
from tests.support.processes import processes_matching, unique_sleep, wait_gone
from tests.support.sshd import OpenSSHServer

pytestmark = pytest.mark.anyio

#: A bound on waits for what a loaded machine does in milliseconds (not a timing test).
BOUND = 60.0


@pytest.fixture(params=["local", "ssh"])
def spec(request: pytest.FixtureRequest) -> Any:
    if request.param == "local":
        return "local"
    server: OpenSSHServer = request.getfixturevalue("sshd")
    return ("ssh", server.sandbox_config())


@asynccontextmanager
async def _sample(spec: Any) -> AsyncIterator[corral.Sample]:
    async with corral.task("loop", sandbox=spec) as task, task.sample(1) as sample:
        yield sample


def _talker(marker: str) -> list[str]:
    """Says ``ready`` once, then sleeps, with a child in its group."""
    return ["sh", "-c", f"echo ready; sleep {marker} & sleep {marker}; wait"]


async def _running(marker: str) -> list[int]:
    """The processes with *marker*, once both sleeps run (the shell has forked twice)."""
    with anyio.fail_after(BOUND):
        while sum(cmd.startswith("sleep ") for cmd in _commands(marker)) < 2:
            await anyio.lowlevel.checkpoint()
    return processes_matching(marker)


def _commands(marker: str) -> list[str]:
    return [line for pid in processes_matching(marker) if (line := cmdline(pid))]


async def _gone(pids: list[int]) -> list[int]:
    """Those of *pids* still running after waiting (in a thread) for them to end."""
    return await anyio.to_thread.run_sync(functools.partial(wait_gone, pids, BOUND))


def _exec_events(sample: corral.Sample, marker: str) -> list[SandboxEvent]:
    return [
        event
        for event in sample.transcript.events
        if isinstance(event, SandboxEvent) and marker in (event.cmd or "")
    ]


async def test_break_kills_the_process_while_the_sample_runs(spec: Any) -> None:
    marker = unique_sleep()
    async with _sample(spec) as sample:
        process = await sandbox().exec_remote(_talker(marker))
        async for event in process:
            assert event == ExecStdout("ready\n")
            pids = await _running(marker)
            break
        assert await _gone(pids) == []  # gone while the sample runs
    # The kill may still be closing its channel; the sample waited for it.
    (recorded,) = _exec_events(sample, marker)
    assert recorded.result is None  # recorded as killed, not as ended


async def test_an_error_in_the_loop_body_kills_the_process(spec: Any) -> None:
    marker = unique_sleep()
    pids: list[int] = []

    async def consume(process: ExecRemoteProcess) -> None:
        async for _ in process:
            pids.extend(await _running(marker))
            raise LookupError("the body failed")

    async with _sample(spec):
        process = await sandbox().exec_remote(_talker(marker))
        with pytest.raises(LookupError):
            await consume(process)
        assert pids
        assert await _gone(pids) == []


async def test_anext_reads_without_tying_the_process_to_a_loop(spec: Any) -> None:
    marker = unique_sleep()
    async with _sample(spec) as sample:
        process = await sandbox().exec_remote(_talker(marker))
        assert await anext(process) == ExecStdout("ready\n")
        pids = await _running(marker)
        # Other work of the sample goes on, in this sandbox too; the process still runs.
        assert (await sandbox().exec(["true"])).returncode == 0
        assert set(pids) <= set(processes_matching(marker))
        await process.kill()
        assert await _gone(pids) == []
        (recorded,) = _exec_events(sample, marker)
        assert recorded.result is None


async def test_a_loop_left_after_the_end_records_the_exit_code(spec: Any) -> None:
    async with _sample(spec) as sample:
        process = await sandbox().exec_remote(["sh", "-c", "echo done; exit 3"])
        async for event in process:
            if isinstance(event, ExecCompleted):
                break
        await anyio.lowlevel.checkpoint()  # where a needless kill would have run
        (recorded,) = _exec_events(sample, "exit 3")
        assert recorded.result == 3
