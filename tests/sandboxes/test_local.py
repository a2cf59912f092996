"""The local sandbox: what it does beyond the conformance suite."""

from __future__ import annotations

import errno
import os
import shlex
import shutil
import stat
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest

import corral
from corral.sandboxes._local import MARKER_ENV, LocalSandboxEnvironment
from corral.sandboxes._proxy import SandboxEnvironmentProxy
from corral.util import (
    OutputLimitExceededError,
    SandboxEnvironment,
    SandboxTimeoutError,
    SandboxUnavailableError,
    override_sandbox_output_limit,
    sandbox,
    subprocess,
)
from tests.conftest import Fifo, processes_matching

pytestmark = pytest.mark.anyio


async def _open() -> LocalSandboxEnvironment:
    environments = await LocalSandboxEnvironment.sample_init("task", None, {})
    assert list(environments) == ["default"]
    env = environments["default"]
    assert isinstance(env, LocalSandboxEnvironment)
    return env


async def _close(env: SandboxEnvironment, interrupted: bool = False) -> None:
    await LocalSandboxEnvironment.sample_cleanup("task", None, {"default": env}, interrupted)


@pytest.fixture
async def local() -> AsyncIterator[LocalSandboxEnvironment]:
    env = await _open()
    try:
        yield env
    finally:
        await _close(env)


def _fake_sudo(tmp_path: Path, script: str) -> str:
    path = tmp_path / "sudo"
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


async def test_each_sample_has_its_own_directory() -> None:
    first, second = await _open(), await _open()
    try:
        assert first.directory != second.directory
        assert os.path.basename(first.directory).startswith("corral-sandbox-")
        assert stat.S_IMODE(os.stat(first.directory).st_mode) == 0o700
        await first.write_file("only-here.txt", "first")
        with pytest.raises(FileNotFoundError):
            await second.read_file("only-here.txt")
        assert (await second.exec(["pwd"])).stdout.strip() == second.directory
    finally:
        await _close(first)
        await _close(second)


async def test_cleanup_removes_the_directory_and_is_idempotent() -> None:
    env = await _open()
    await env.write_file("deep/down/file.bin", b"x" * 1000)
    await env.exec(["true"])
    await _close(env)
    assert not os.path.exists(env.directory)
    await _close(env, interrupted=True)  # again: nothing to do, no error
    with pytest.raises(SandboxUnavailableError, match="cleaned up"):
        await env.exec(["true"])
    with pytest.raises(SandboxUnavailableError):
        await env.read_file("deep/down/file.bin")
    with pytest.raises(SandboxUnavailableError):
        await env.write_file("x", "y")
    with pytest.raises(ConnectionError):
        await env.connection()


async def test_cleanup_skips_foreign_environments(local: LocalSandboxEnvironment) -> None:
    foreign = cast("SandboxEnvironment", object())
    await LocalSandboxEnvironment.sample_cleanup(
        "task", None, {"other": foreign, "default": local}, False
    )
    assert not os.path.exists(local.directory)


async def test_cleanup_kills_processes_that_left_their_group(
    local: LocalSandboxEnvironment, no_leftovers: str
) -> None:
    # The escapee starts a session of its own, so the supervised subprocess's
    # group kill cannot reach it; it writes ready.txt once it has done so.
    inner = f"echo up > ready.txt; exec sleep {no_leftovers}"
    script = (
        f"setsid sh -c {shlex.quote(inner)} >/dev/null 2>&1 </dev/null &"
        " while [ ! -s ready.txt ]; do sleep 0.01; done"
    )
    result = await local.exec(["sh", "-c", script])
    assert result.returncode == 0, result.stderr
    escaped = processes_matching(no_leftovers)
    assert escaped != []
    # Not our children, so their exit is awaited through pidfds.
    pidfds = [os.pidfd_open(pid) for pid in escaped]
    try:
        await _close(local)
        with anyio.fail_after(5):
            for fd in pidfds:
                await anyio.wait_readable(fd)
    finally:
        for fd in pidfds:
            os.close(fd)
    assert processes_matching(no_leftovers) == []


async def test_commands_carry_the_cleanup_tag(local: LocalSandboxEnvironment) -> None:
    result = await local.exec(["sh", "-c", f'printf %s "${MARKER_ENV}"'], env={MARKER_ENV: "x"})
    assert len(result.stdout) == 16  # the caller cannot override the tag


async def test_missing_program_and_cwd(local: LocalSandboxEnvironment) -> None:
    with pytest.raises(FileNotFoundError):
        await local.exec(["definitely-not-a-program-corral"])
    with pytest.raises(FileNotFoundError):
        await local.exec(["true"], cwd="no/such/dir")


async def test_timeout_through_the_proxy(local: LocalSandboxEnvironment, no_leftovers: str) -> None:
    """The proxy's timeout cancels the local command; what it printed is kept."""
    env = SandboxEnvironmentProxy(local)
    with pytest.raises(
        SandboxTimeoutError, match=r"^Command .*sleep.* timed out after 1 seconds$"
    ) as info:
        await env.exec(["sh", "-c", f"echo started; exec sleep {no_leftovers}"], timeout=1.0)
    assert info.value.truncated_output == "started\n"


async def test_waiting_for_a_subprocess_slot_does_not_count_against_the_timeout(
    fifo: Fifo, tmp_path: Path
) -> None:
    """As with ``subprocess()``, an exec's timeout counts while it runs, not while it waits."""
    release = Fifo(tmp_path / "release")
    try:
        async with corral.task("t", sandbox="local", max_subprocesses=1) as task, task.sample(1):
            env = sandbox()
            result: list[Any] = []

            async def waiter() -> None:
                result.append(await env.exec(["echo", "ran"], timeout=1.0))

            async with anyio.create_task_group() as tg:
                # The only slot is held by a command that waits to be released.
                tg.start_soon(
                    env.exec, ["sh", "-c", f"{fifo.shell_ready()}; read l < '{release.path}'"]
                )
                await fifo.wait()
                tg.start_soon(waiter)
                await anyio.sleep(1.5)  # longer than the timeout, all of it spent waiting
                os.write(release.fd, b"\n")
        assert result[0].stdout == "ran\n"
    finally:
        release.close()


async def test_cancellation_mid_exec_leaves_no_process(
    local: LocalSandboxEnvironment, fifo: Fifo, no_leftovers: str
) -> None:
    # Both sleeps are forked (in the group) before readiness is signalled; the
    # shell itself carries the marker in its command line too.
    script = f"sleep {no_leftovers} & sleep {no_leftovers} & {fifo.shell_ready()}; wait"
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(local.exec, ["sh", "-c", script])
            await fifo.wait()
            assert processes_matching(no_leftovers)
            tg.cancel_scope.cancel()
    # The supervised subprocess reaped the group before the cancellation ended.
    assert processes_matching(no_leftovers) == []


async def test_user_other_without_sudo(
    local: LocalSandboxEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: None)
    with pytest.raises(PermissionError, match="'corral-nobody'") as info:
        await local.exec(["true"], user="corral-nobody")
    assert "sudo" in str(info.value)


async def test_user_current_runs_directly(
    local: LocalSandboxEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pwd

    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: None)
    me = pwd.getpwuid(os.geteuid()).pw_name
    result = await local.exec(["id", "-u"], user=me)
    assert result.stdout.strip() == str(os.geteuid())


@pytest.mark.parametrize(
    "message", ["sudo: a password is required", "sudo: unknown user corral-nobody"]
)
async def test_user_refused_by_sudo(
    local: LocalSandboxEnvironment,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    message: str,
) -> None:
    sudo = _fake_sudo(tmp_path, f"echo '{message}' >&2; exit 1")
    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: sudo)
    with pytest.raises(PermissionError, match="'corral-nobody'"):
        await local.exec(["true"], user="corral-nobody")


async def test_user_through_sudo(
    local: LocalSandboxEnvironment, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A stand-in that checks the options and runs what follows "--".
    script = (
        'printf "%s " "$@" > sudo-args.txt\n'
        'while [ "$1" != "--" ]; do shift; done\n'
        "shift\n"
        'exec "$@"'
    )
    sudo = _fake_sudo(tmp_path, script)
    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: sudo)
    result = await local.exec(
        ["sh", "-c", 'printf "%s" "$GREETING"; exit 4'], env={"GREETING": "hi"}, user="alice"
    )
    assert (result.returncode, result.stdout) == (4, "hi")
    args = (await local.read_file("sudo-args.txt")).split()
    assert args[:4] == ["-n", "-u", "alice", "--"]


async def test_connection_opens_a_shell_in_the_directory(
    local: LocalSandboxEnvironment,
) -> None:
    connection = await local.connection()
    assert connection.type == "local"
    assert shlex.quote(local.directory) in connection.command
    result = await subprocess(
        ["sh", "-c", connection.command], input="pwd\n", env={"SHELL": "/bin/sh"}
    )
    assert result.stdout.strip() == local.directory


async def test_a_device_is_refused_not_read(local: LocalSandboxEnvironment) -> None:
    with pytest.raises(OSError, match=r"only regular files .* a character device") as info:
        await local.read_file("/dev/zero", text=False)
    assert info.value.filename == "/dev/zero"


async def test_a_fifo_is_refused_at_once_for_reading_and_writing(
    local: LocalSandboxEnvironment,
) -> None:
    # Made by a command, as a model would: ``mkfifo answer.txt``.
    assert (await local.exec(["mkfifo", "answer.txt"])).success
    with anyio.fail_after(10):  # the read used to wait for a writer forever, in a thread
        with pytest.raises(OSError, match="this is a FIFO") as info:
            await local.read_file("answer.txt")
        assert info.value.filename == os.path.join(local.directory, "answer.txt")
        with pytest.raises(OSError, match="refusing to write to a FIFO"):
            await local.write_file("answer.txt", "x")  # used to block the event loop itself
    await local.write_file("fine.txt", "still works")
    assert await local.read_file("fine.txt") == "still works"


async def test_large_file_io_runs_in_a_worker_thread(
    local: LocalSandboxEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = anyio.to_thread.run_sync
    calls: list[str] = []

    async def spy(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        calls.append(func.__name__)
        return await original(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", spy)
    await local.write_file("small.txt", "small")
    assert await local.read_file("small.txt") == "small"
    assert calls == []  # small files stay on the event loop thread

    data = os.urandom(1024 * 1024)
    await local.write_file("large.bin", data)
    assert await local.read_file("large.bin", text=False) == data
    assert calls == ["_write_sync", "_read_sync"]


async def test_large_io_does_not_block_the_event_loop(local: LocalSandboxEnvironment) -> None:
    # While 50 MiB is written and read back, another task keeps running.
    ticks = 0
    done = anyio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await anyio.lowlevel.checkpoint()

    data = b"z" * (50 * 1024 * 1024)
    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        await local.write_file("big.bin", data)
        assert await local.read_file("big.bin", text=False) == data
        done.set()
    assert ticks > 50


async def test_the_output_limit_counts_the_bytes_printed(local: LocalSandboxEnvironment) -> None:
    """Regression: undecodable bytes, each shown as U+FFFD (3 bytes in UTF-8), were counted
    as 3 bytes each, so output under the limit was refused."""
    env = SandboxEnvironmentProxy(local)
    with override_sandbox_output_limit(1024, "exec"):
        printed = await env.exec(["sh", "-c", r"printf '\377%.0s' $(seq 400)"])
    assert printed.stdout == "\ufffd" * 400


async def test_the_kept_tail_drops_a_character_cut_at_its_start(
    local: LocalSandboxEnvironment,
) -> None:
    env = SandboxEnvironmentProxy(local)
    with override_sandbox_output_limit(5, "exec"), pytest.raises(OutputLimitExceededError) as info:
        await env.exec(["cat"], input="é" * 10)  # 20 bytes: the last 5 start inside an "é"
    assert info.value.truncated_output == "éé"


async def test_a_state_directory_that_cannot_be_written_does_not_stop_a_sandbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from corral._core import _leftovers

    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    monkeypatch.setenv("CORRAL_STATE_DIR", str(not_a_directory))
    monkeypatch.setattr(_leftovers, "_writer", _leftovers._Writer())  # this test's own record
    async with corral.task("t", sandbox="local") as task, task.sample(1):
        result = await sandbox().exec(["echo", "works"])
    assert result.stdout == "works\n"
    assert "cannot record sandboxes in" in caplog.text
    assert str(not_a_directory) in caplog.text


async def test_an_endless_writer_is_stopped_once_past_the_output_limit() -> None:
    marker = f"yes-{os.urandom(6).hex()}"
    with override_sandbox_output_limit(64 * 1024, "exec"):
        async with corral.task("t", sandbox="local") as task, task.sample(1):
            with anyio.fail_after(30):  # it used to run for ever, only truncated
                with pytest.raises(OutputLimitExceededError) as info:
                    await sandbox().exec(["sh", "-c", f"exec yes {marker}"])
            assert processes_matching(marker) == []  # its group is gone before exec returned
    kept = info.value.truncated_output
    assert kept is not None
    assert 0 < len(kept) <= 64 * 1024
    assert set(kept.split()) <= {marker}


async def test_a_deep_path_is_written_or_refused_by_name_not_by_recursion(
    local: LocalSandboxEnvironment,
) -> None:
    deep = "/".join(["a"] * 1000) + "/f.txt"  # about 2,000 bytes: the system takes it
    await local.write_file(deep, "deep")
    assert await local.read_file(deep) == "deep"
    too_deep = "/".join(["b"] * 2500) + "/f.txt"  # over PATH_MAX
    with pytest.raises(OSError, match="File name too long") as info:
        await local.write_file(too_deep, "x")
    assert info.value.errno == errno.ENAMETOOLONG
    assert info.value.filename is not None


async def test_a_tree_thousands_of_levels_deep_is_removed_at_cleanup() -> None:
    # What `mkdir a; cd a` in a loop makes: too deep for shutil.rmtree, and for any path.
    make = (
        "import os\n"
        "fd = os.open('.', os.O_RDONLY)\n"
        "for _ in range(3000):\n"
        "    os.mkdir('a', dir_fd=fd)\n"
        "    fd = os.open('a', os.O_RDONLY, dir_fd=fd)\n"
        "open(os.open('f', os.O_WRONLY | os.O_CREAT, dir_fd=fd), 'w').write('x')\n"
    )
    async with corral.task("t", sandbox="local") as task, task.sample(1):
        assert (await sandbox().exec([sys.executable, "-c", make])).success
        directory = (await sandbox().exec(["pwd"])).stdout.strip()
    assert not os.path.exists(directory)
