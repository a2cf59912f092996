"""Remote commands do not outlive their connection: the exec script's watcher.

A harness process (a small script, run under trio or asyncio) starts ssh
samples that sleep, and is SIGKILLed; sshd does not kill a session's
command when its connection drops, so only the watcher each exec script
leaves behind can stop them. Readiness comes through a FIFO the remote
commands write to, and "gone" is waited for on pidfds with a generous bound
(a test fails only if something is still running after it).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

import corral
from corral.util import SandboxUnavailableError, sandbox
from tests.sandboxes.ssh.conftest import remote_leftovers
from tests.support.fifo import Fifo
from tests.support.processes import kill_and_wait, processes_matching, unique_sleep, wait_gone
from tests.support.sshd import OpenSSHServer

BACKENDS = ["trio", "asyncio"]
#: Bounds far above what a loaded machine needs (nothing here is timed).
READY_TIMEOUT = 120.0
GONE_TIMEOUT = 10.0

_HARNESS = """
import json, sys

import anyio

import corral
from corral.util import ExecRemoteStreamingOptions, sandbox

spec = json.loads(open(sys.argv[1]).read())


async def main() -> None:
    async def sample(task: corral.Task, n: int) -> None:
        async with task.sample(n):
            env = sandbox()
            print("dir", env.inner.directory, flush=True)
            argv = ["sh", "-c", spec["command"]]
            if spec["stream"]:  # exec_remote, stdin kept open, the events read
                options = ExecRemoteStreamingOptions(
                    user=spec["user"], cwd=spec["cwd"], input=spec["input"], stdin_open=True
                )
                async for _ in await env.exec_remote(argv, options):
                    pass
            else:
                await env.exec(argv, user=spec["user"], cwd=spec["cwd"], input=spec["input"])

    async with corral.task("harness", sandbox=("ssh", spec["config"])) as task:
        for n in range(spec["samples"]):
            task.start_soon(sample, task, n)


anyio.run(main, backend=spec["backend"])
"""


class _Harness:
    """A harness process whose samples all run their command on the server."""

    def __init__(self, process: subprocess.Popen[str], marker: str, dirs: list[str]) -> None:
        self.process = process
        self.marker = marker
        self.dirs = dirs

    def remote(self) -> list[int]:
        """The live processes on the server that run (or watch) a command of ours."""
        return [pid for pid in processes_matching(self.marker) if pid != self.process.pid]


_Starter = Callable[..., _Harness]


@pytest.fixture
def start_harness(tmp_path: Path, sshd: OpenSSHServer, remote_fifo: Fifo) -> Iterator[_Starter]:
    started: list[_Harness] = []

    def start(
        backend: str,
        *,
        samples: int,
        ignore_term: bool = False,
        user: str | None = None,
        input: str | None = None,
        stream: bool = False,
    ) -> _Harness:
        marker = unique_sleep()
        trap = "trap '' TERM; " if ignore_term else ""
        spec = {
            "backend": backend,
            "config": sshd.sandbox_config(),
            "command": f"{trap}{remote_fifo.shell_ready()}; exec sleep {marker}",
            "samples": samples,
            "user": user,
            "cwd": "/" if user is not None else None,  # the sample's dir is the login user's
            "input": input,
            "stream": stream,
        }
        spec_file = tmp_path / f"harness-{len(started)}.json"
        spec_file.write_text(json.dumps(spec))
        script = tmp_path / "harness.py"
        script.write_text(_HARNESS)
        process = subprocess.Popen(
            [sys.executable, str(script), str(spec_file)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "CORRAL_STATE_DIR": str(tmp_path / "state")},
        )
        harness = _Harness(process, marker, [])
        started.append(harness)
        got = remote_fifo.wait_blocking(samples, READY_TIMEOUT)
        if got != samples:
            process.kill()
            _, err = process.communicate()
            pytest.fail(f"only {got} of {samples} remote commands started; stderr:\n{err}")
        assert process.stdout is not None
        for _ in range(samples):  # printed before each exec, so there already
            harness.dirs.append(process.stdout.readline().split(maxsplit=1)[1].strip())
        return harness

    yield start
    for harness in started:
        harness.process.kill()
        harness.process.communicate()
        kill_and_wait(processes_matching(harness.marker))
        for directory in harness.dirs:
            if directory.startswith("/tmp/corral-sandbox-"):
                shutil.rmtree(directory, ignore_errors=True)


def _sigkill(harness: _Harness) -> list[int]:
    """SIGKILL the harness; what of its remote processes is still running after the bound."""
    before = harness.remote()
    harness.process.send_signal(signal.SIGKILL)
    assert harness.process.wait(timeout=READY_TIMEOUT) == -signal.SIGKILL
    left = wait_gone(before, GONE_TIMEOUT)
    return left + [pid for pid in harness.remote() if pid not in left]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("input", [None, "x"], ids=["no-input", "input"])
def test_sigkill_of_the_harness_stops_its_remote_commands(
    start_harness: _Starter, no_remote_leftovers: OpenSSHServer, backend: str, input: str | None
) -> None:
    harness = start_harness(backend, samples=10, input=input)
    assert len(harness.remote()) >= 10

    assert _sigkill(harness) == []
    # Not even the sshd processes of the dead connections are left.
    assert wait_gone(list(remote_leftovers(no_remote_leftovers)), GONE_TIMEOUT) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigkill_of_the_harness_stops_its_streamed_commands(
    start_harness: _Starter, no_remote_leftovers: OpenSSHServer, backend: str
) -> None:
    """exec_remote's commands (stdin open, output being read) die with the harness too."""
    harness = start_harness(backend, samples=4, stream=True)
    assert len(harness.remote()) >= 4

    assert _sigkill(harness) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigkill_stops_a_term_ignoring_command(
    start_harness: _Starter, no_remote_leftovers: OpenSSHServer, backend: str
) -> None:
    harness = start_harness(backend, samples=2, ignore_term=True)

    assert _sigkill(harness) == []


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("ignore_term", [False, True], ids=["plain", "ignore-term"])
def test_sigkill_stops_a_command_run_as_another_user(
    start_harness: _Starter,
    no_remote_leftovers: OpenSSHServer,
    backend: str,
    ignore_term: bool,
) -> None:
    server = no_remote_leftovers
    harness = start_harness(backend, samples=1, user=server.other_username, ignore_term=ignore_term)
    assert server.processes_of(server.other_username) != []

    assert _sigkill(harness) == []
    assert wait_gone(server.processes_of(server.other_username), GONE_TIMEOUT) == []


@pytest.mark.anyio
async def test_a_dropped_connection_stops_its_commands(
    fresh_sshd: OpenSSHServer, no_remote_leftovers: OpenSSHServer, remote_fifo: Fifo
) -> None:
    """sshd's session processes die (as in a crash); the commands they ran follow them."""
    server = fresh_sshd
    marker = unique_sleep()
    async with (
        corral.task("t", sandbox=("ssh", server.sandbox_config())) as task,
        task.sample(1),
    ):
        env = sandbox()

        async def sleeper(input: str | None) -> None:
            with pytest.raises(SandboxUnavailableError, match="lost the connection"):
                await env.exec(
                    ["sh", "-c", f"{remote_fifo.shell_ready()}; exec sleep {marker}"], input=input
                )

        async with anyio.create_task_group() as tg:
            tg.start_soon(sleeper, None)
            tg.start_soon(sleeper, "x")
            await remote_fifo.wait(2)
            running = processes_matching(marker)
            await anyio.to_thread.run_sync(server.kill_sessions)
        gone = await anyio.to_thread.run_sync(wait_gone, running, GONE_TIMEOUT)
        assert gone == []
        assert processes_matching(marker) == []
        assert (await env.exec(["echo", "still works"])).stdout == "still works\n"


@pytest.mark.anyio
async def test_normal_execs_leave_no_watcher_and_cleanup_counts_none(
    no_remote_leftovers: OpenSSHServer, remote_fifo: Fifo, caplog: pytest.LogCaptureFixture
) -> None:
    """Exit statuses, output and cancellation are as before; the watchers are gone after."""
    config = no_remote_leftovers.sandbox_config()
    marker = unique_sleep()
    sleeper = ["sh", "-c", f"{remote_fifo.shell_ready()}; exec sleep {marker}"]
    caplog.set_level(logging.WARNING, "corral.sandbox")
    # A kill grace far above the hang guard: a watcher that held up the kill would show.
    async with (
        corral.task("t", sandbox=("ssh", config), kill_grace=600) as task,
        task.sample(1),
    ):
        env = sandbox()
        result = await env.exec(["sh", "-c", f"echo out; echo err >&2; exit 3; : {marker}"])
        assert (result.returncode, result.stdout, result.stderr) == (3, "out\n", "err\n")
        echoed = await env.exec(["sh", "-c", f"cat; : {marker}"], input="in")
        assert (echoed.returncode, echoed.stdout) == (0, "in")
        with anyio.fail_after(READY_TIMEOUT):  # a hang guard, not a timing
            async with anyio.create_task_group() as tg:
                tg.start_soon(env.exec, sleeper)
                await remote_fifo.wait()
                tg.cancel_scope.cancel()
        left = await anyio.to_thread.run_sync(wait_gone, processes_matching(marker), GONE_TIMEOUT)
        assert left == []
    assert "killed" not in caplog.text  # cleanup found nothing of ours left running


class _Retries(logging.Handler):
    """Counts the cleanup's "trying again" records (emitted on the SSH loop's thread)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("cleanup of"):
            self.seen.set()


@pytest.fixture
def cleanup_retries() -> Iterator[_Retries]:
    handler = _Retries()
    logger = logging.getLogger("corral.sandbox")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.mark.anyio
async def test_cleanup_outlasts_a_server_restart(
    fresh_sshd: OpenSSHServer, cleanup_retries: _Retries
) -> None:
    """The server goes down while samples run, and comes back once their cleanups have
    failed: they try again, and no directory is left."""
    server = fresh_sshd
    samples = 10
    directories: list[str] = []
    placed = anyio.Event()
    down = anyio.Event()

    async def sample(task: corral.Task, n: int) -> None:
        async with task.sample(n):
            directories.append(sandbox().inner.directory)  # type: ignore[attr-defined]
            if len(directories) == samples:
                placed.set()
            await down.wait()

    async def restart_once_retrying() -> None:
        assert await anyio.to_thread.run_sync(cleanup_retries.seen.wait, READY_TIMEOUT)
        await anyio.to_thread.run_sync(server.start)

    async with (
        corral.task("t", sandbox=("ssh", server.sandbox_config())) as task,
        anyio.create_task_group() as tg,
    ):
        for n in range(samples):
            tg.start_soon(sample, task, n)
        await placed.wait()
        await anyio.to_thread.run_sync(server.stop)  # returns once it is all gone
        tg.start_soon(restart_once_retrying)
        down.set()
    assert cleanup_retries.seen.is_set()
    assert [d for d in directories if os.path.exists(d)] == []


@pytest.mark.anyio
async def test_cleanup_gives_up_after_cleanup_retry(
    fresh_sshd: OpenSSHServer, cleanup_retries: _Retries
) -> None:
    """A host that stays down: the cleanup fails as before once its retries are used up."""
    server = fresh_sshd
    config = server.sandbox_config(cleanup_retry=0.5)
    directories: list[str] = []

    async def sample(task: corral.Task) -> None:
        async with task.sample(1):
            directories.append(sandbox().inner.directory)  # type: ignore[attr-defined]
            await anyio.to_thread.run_sync(server.stop)

    async with corral.task("t", sandbox=("ssh", config)) as task:
        with pytest.warns(RuntimeWarning, match="sample_cleanup.*cannot connect"):
            await sample(task)
    [directory] = directories
    assert cleanup_retries.seen.is_set()
    assert os.path.isdir(directory)
    shutil.rmtree(directory)
