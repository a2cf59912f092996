"""subprocess(): timeouts, cancellation and the process-group kill.

Warnings are errors in this suite, so a test in which the supervisor had to
escalate to SIGKILL (which warns) fails unless it expects the warning: that is
how these tests tell "returned as soon as the group died" from "waited out the
grace period", without measuring time.
"""

from __future__ import annotations

import os
import random
import resource
import shlex
import warnings

import anyio
import pytest

import corral
from corral.util import subprocess
from tests.support.fifo import Fifo, cancel_once_ready
from tests.support.processes import kill_and_wait, open_fd_count, processes_matching, python

pytestmark = pytest.mark.anyio

# A grace no test should ever wait out: reaching it fails the hang guard.
LONG_GRACE = 600
HANG_GUARD = 60


def _ignores_term(marker: str, ready: str) -> list[str]:
    code = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"open({ready!r}, 'w').write('x')\n"
        f"time.sleep({marker})\n"
    )
    return python(code)


async def test_timeout_raises_builtin_timeout_error_naming_command(no_leftovers: str) -> None:
    with anyio.fail_after(HANG_GUARD):
        async with corral.task("t", kill_grace=LONG_GRACE):
            with pytest.raises(TimeoutError) as info:
                await subprocess(["sleep", no_leftovers], timeout=0.2)
    assert str(info.value) == f"Command 'sleep {no_leftovers}' timed out after 0.2 seconds"


async def test_timeout_kills_the_whole_group(no_leftovers: str) -> None:
    """Children and grandchildren all die; SIGTERM suffices, so no SIGKILL warning."""
    script = f"sleep {no_leftovers} & sleep {no_leftovers} & sleep {no_leftovers}; wait"
    with anyio.fail_after(HANG_GUARD):
        async with corral.task("t", kill_grace=LONG_GRACE):
            with pytest.raises(TimeoutError):
                await subprocess(["sh", "-c", script], timeout=0.3)


async def test_grandchild_holding_the_pipe_does_not_delay_timeout(no_leftovers: str) -> None:
    """Regression: a background grandchild keeps stdout open; the timeout still holds."""
    script = f"sleep {no_leftovers} & sleep {no_leftovers}; wait"
    with anyio.fail_after(HANG_GUARD):
        async with corral.task("t", kill_grace=LONG_GRACE):
            with pytest.raises(TimeoutError):
                await subprocess(["sh", "-c", script], timeout=0.2)


async def test_escaped_descendant_holding_the_pipe_cannot_hold_the_caller(
    no_leftovers: str, fifo: Fifo
) -> None:
    """A descendant that left the group (setsid) keeps the pipes: the drain is bounded."""
    escape = (
        f"import os, time; os.setsid(); open({str(fifo.path)!r}, 'w').write('x'); "
        f"time.sleep({no_leftovers})"
    )
    script = f"{shlex.join(python(escape))} & sleep {no_leftovers}"
    try:
        with anyio.fail_after(HANG_GUARD):
            async with corral.task("t", kill_grace=LONG_GRACE):
                await cancel_once_ready(["sh", "-c", script], fifo)
        escaped = processes_matching(no_leftovers)
        assert len(escaped) == 1, "the setsid() descendant escaped the group, by design"
    finally:
        assert kill_and_wait(processes_matching(no_leftovers)) == []


async def test_term_ignoring_child_is_killed_after_the_grace(no_leftovers: str, fifo: Fifo) -> None:
    with anyio.fail_after(HANG_GUARD):
        async with corral.task("t", kill_grace=0.1):
            with pytest.warns(
                RuntimeWarning, match=r"still running 0\.1 s after SIGTERM; sent SIGKILL"
            ):
                await cancel_once_ready(_ignores_term(no_leftovers, str(fifo.path)), fifo)


async def test_escalation_warning_raised_as_error_still_reaps(
    no_leftovers: str, fifo: Fifo
) -> None:
    """Regression: under ``-W error`` the SIGKILL warning raised before the reap."""
    with anyio.fail_after(HANG_GUARD), warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        async with corral.task("t", kill_grace=0.1):
            # Raised in the task group that cancelled the command: in a group.
            with pytest.RaisesGroup(pytest.RaisesExc(RuntimeWarning, match="sent SIGKILL")):
                await cancel_once_ready(_ignores_term(no_leftovers, str(fifo.path)), fifo)
            # The child was killed and reaped before the warning was raised.
            assert processes_matching(no_leftovers) == []


async def test_kill_grace_from_the_environment(
    no_leftovers: str, fifo: Fifo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CORRAL_KILL_GRACE", "0.2")
    with anyio.fail_after(HANG_GUARD), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with anyio.create_task_group() as tg:
            tg.start_soon(subprocess, _ignores_term(no_leftovers, str(fifo.path)))
            await fifo.wait()
            tg.cancel_scope.cancel()
    (message,) = [str(w.message) for w in caught if w.category is RuntimeWarning]
    assert message.startswith(
        f"command {shlex.join(_ignores_term(no_leftovers, str(fifo.path)))!r}"
    )
    assert message.endswith("was still running 0.2 s after SIGTERM; sent SIGKILL")


async def test_task_kill_grace_overrides_the_environment(
    no_leftovers: str, fifo: Fifo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CORRAL_KILL_GRACE", str(LONG_GRACE))
    with anyio.fail_after(HANG_GUARD):
        async with corral.task("t", kill_grace=0.1):
            with pytest.warns(RuntimeWarning, match=r"still running 0\.1 s"):
                await cancel_once_ready(_ignores_term(no_leftovers, str(fifo.path)), fifo)


async def test_cancellation_kills_and_reraises(no_leftovers: str, fifo: Fifo) -> None:
    finished = False
    with anyio.fail_after(HANG_GUARD):
        async with corral.task("t", kill_grace=LONG_GRACE) as task:

            async def run() -> None:
                nonlocal finished
                await subprocess(["sh", "-c", f"{fifo.shell_ready()}; exec sleep {no_leftovers}"])
                finished = True

            task.start_soon(run)
            await fifo.wait()
            # (A child caught inside execve() may briefly show no command line.)
            assert processes_matching(no_leftovers)
            task.cancel("test is done")
    assert not finished


async def test_timeout_does_not_count_the_wait_for_a_slot(fifo: Fifo) -> None:
    """The timeout starts once the command holds its slot."""
    gate = Fifo(fifo.path.with_name("gate"))
    try:
        async with corral.task("t", max_subprocesses=1) as task:
            # The hog holds the only slot until the test writes to the gate.
            hog = ["sh", "-c", f"{fifo.shell_ready()}; read x < '{gate.path}'"]
            task.start_soon(subprocess, hog)
            await fifo.wait()
            results: list[bool] = []

            async def queued() -> None:
                results.append((await subprocess(["true"], timeout=1.0)).success)

            task.start_soon(queued)
            await anyio.wait_all_tasks_blocked()
            assert task.statistics().subprocesses_running == 1
            await anyio.sleep(1.5)  # the time under test: longer than the timeout
            assert results == []
            os.write(gate.fd, b"go\n")
        assert results == [True]
    finally:
        gate.close()


async def test_limit_is_respected(fifo: Fifo, no_leftovers: str) -> None:
    async with corral.task("t", max_subprocesses=2, kill_grace=LONG_GRACE) as task:
        for _ in range(6):
            task.start_soon(
                subprocess, ["sh", "-c", f"{fifo.shell_ready()}; exec sleep {no_leftovers}"]
            )
        await fifo.wait(2)
        await anyio.wait_all_tasks_blocked()
        assert fifo.pending() == 0
        stats = task.statistics()
        assert (stats.subprocesses_running, stats.max_subprocesses) == (2, 2)
        assert 1 <= len(processes_matching(no_leftovers)) <= 2
        task.cancel()


@pytest.mark.slow
async def test_many_sequential_cancellations_leak_nothing(fifo: Fifo, no_leftovers: str) -> None:
    """1,000 cancellations at every stage: fds and children back to baseline."""
    fds = open_fd_count()
    rng = random.Random(1234)
    command = ["sh", "-c", f"{fifo.shell_ready()}; exec sleep {no_leftovers}"]
    with anyio.fail_after(300):
        async with corral.task("t", kill_grace=LONG_GRACE):
            for i in range(1000):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(subprocess, command)
                    if i % 2:
                        await fifo.wait()  # cancel a running child
                    else:
                        for _ in range(rng.randrange(6)):  # cancel at a random early point
                            await anyio.lowlevel.checkpoint()
                    tg.cancel_scope.cancel()
                fifo.pending()
    assert open_fd_count() == fds
    assert processes_matching(no_leftovers) == []


@pytest.mark.slow
async def test_300_children_cancelled_at_once(fifo: Fifo, no_leftovers: str) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    fds = open_fd_count()
    try:
        with anyio.fail_after(HANG_GUARD):
            async with corral.task("t", max_subprocesses=300, kill_grace=LONG_GRACE) as task:
                for _ in range(300):
                    task.start_soon(
                        subprocess, ["sh", "-c", f"{fifo.shell_ready()}; exec sleep {no_leftovers}"]
                    )
                await fifo.wait(300)
                assert processes_matching(no_leftovers)  # all 300 signalled they run
                task.cancel()
        assert processes_matching(no_leftovers) == []
        assert open_fd_count() == fds
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize("text", [True, False])
async def test_a_timeout_keeps_what_the_command_printed(text: bool) -> None:
    # sh prints at once; the 2 s are for a loaded machine to get there.
    command = "printf 'half a line'; printf 'oops' >&2; exec sleep 300"
    with pytest.raises(TimeoutError, match="timed out after 2 seconds") as info:
        await subprocess(["sh", "-c", command], text, timeout=2)
    expected = ("half a line", "oops") if text else (b"half a line", b"oops")
    assert (info.value.stdout, info.value.stderr) == expected  # type: ignore[attr-defined]
