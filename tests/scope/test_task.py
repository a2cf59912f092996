"""corral.task(): the task scope and its settings."""

from __future__ import annotations

import os
import sys

import anyio
import anyio.abc
import anyio.lowlevel
import pytest

import corral
from corral import current_task
from corral.util import concurrency_status, subprocess
from tests.support.fifo import Fifo, cancel_once_ready
from tests.support.processes import processes_matching

pytestmark = pytest.mark.anyio


async def test_waits_for_work_started_inside() -> None:
    done: list[int] = []

    async def work(n: int) -> None:
        await anyio.lowlevel.checkpoint()
        done.append(n)

    async with corral.task("t") as task:
        for n in range(5):
            task.start_soon(work, n)
    assert sorted(done) == [0, 1, 2, 3, 4]


async def test_start_returns_the_started_value() -> None:
    async def server(*, task_status: anyio.abc.TaskStatus[str]) -> None:
        task_status.started("ready")

    async with corral.task("t") as task:
        assert await task.start(server) == "ready"


async def test_an_error_cancels_the_rest_and_propagates() -> None:
    cancelled = False

    async def sleeper() -> None:
        nonlocal cancelled
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled = True
            raise

    async def boom() -> None:
        await anyio.wait_all_tasks_blocked()
        raise ValueError("boom")

    with pytest.raises(ExceptionGroup) as info:  # noqa: PT012
        async with corral.task("t") as task:
            task.start_soon(sleeper)
            task.start_soon(boom)
    assert info.group_contains(ValueError, match="boom")
    assert cancelled


async def test_cancel_stops_the_body_and_reaps_subprocesses(fifo: Fifo, no_leftovers: str) -> None:
    reached_end = False
    with anyio.fail_after(60):
        async with corral.task("t", kill_grace=600) as task:
            task.start_soon(
                subprocess, ["sh", "-c", f"{fifo.shell_ready()}; exec sleep {no_leftovers}"]
            )
            await fifo.wait()
            task.cancel("enough")
            await anyio.sleep_forever()
            reached_end = True
    assert not reached_end
    assert processes_matching(no_leftovers) == []


async def test_outer_cancellation_reaps_subprocesses(fifo: Fifo, no_leftovers: str) -> None:
    with anyio.fail_after(60), anyio.CancelScope() as outer:
        async with corral.task("t", max_subprocesses=3, kill_grace=600) as task:
            for _ in range(3):
                task.start_soon(
                    subprocess, ["sh", "-c", f"{fifo.shell_ready()}; exec sleep {no_leftovers}"]
                )
            await fifo.wait(3)
            outer.cancel()
    assert outer.cancelled_caught
    assert processes_matching(no_leftovers) == []


async def test_current_task_follows_the_scopes() -> None:
    assert current_task() is None
    seen: list[object] = []

    async def child() -> None:
        seen.append(current_task())

    async with corral.task("outer") as outer:
        assert current_task() is outer
        outer.start_soon(child)
        async with corral.task("inner") as inner:
            assert current_task() is inner
            inner.start_soon(child)
        assert current_task() is outer
    assert current_task() is None
    assert sorted(t.name for t in seen) == ["inner", "outer"]  # type: ignore[attr-defined]


async def test_task_limit_is_listed_while_the_task_runs() -> None:
    async with corral.task("eval", max_subprocesses=3) as task:
        await subprocess(["true"])
        assert concurrency_status() == {"subprocesses/eval": (0, 3)}
        stats = task.statistics()
        assert (stats.name, stats.state, stats.max_subprocesses) == ("eval", "running", 3)
    assert concurrency_status() == {}
    assert task.statistics().state == "closed"


async def test_without_a_limit_the_loop_wide_one_is_used() -> None:
    async with corral.task("eval"):
        await subprocess(["true"])
    assert concurrency_status() == {"subprocesses": (0, os.cpu_count() or 1)}


async def test_nested_task_inherits_unset_settings(
    fifo: Fifo, no_leftovers: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CORRAL_KILL_GRACE", "600")
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    code += f"open({str(fifo.path)!r}, 'w').write('x'); time.sleep({no_leftovers})"
    with anyio.fail_after(60):
        async with corral.task("outer", max_subprocesses=3, kill_grace=0.1) as outer:
            async with corral.task("inner") as inner:
                assert inner.statistics().max_subprocesses == 3
                with pytest.warns(RuntimeWarning, match=r"still running 0\.1 s"):
                    await cancel_once_ready([sys.executable, "-c", code], fifo)
                async with corral.task("own", max_subprocesses=1) as own:
                    assert own.statistics().max_subprocesses == 1
            assert outer.statistics().max_subprocesses == 3


async def test_statistics_of_a_task_without_its_own_limit(fifo: Fifo, no_leftovers: str) -> None:
    async with corral.task("t", kill_grace=600) as task:
        task.start_soon(
            subprocess, ["sh", "-c", f"{fifo.shell_ready()}; exec sleep {no_leftovers}"]
        )
        await fifo.wait()
        stats = task.statistics()
        assert (stats.subprocesses_running, stats.max_subprocesses) == (1, os.cpu_count() or 1)
        task.cancel()


async def test_a_task_is_entered_once() -> None:
    scope = corral.task("t")
    async with scope:
        pass
    with pytest.raises(RuntimeError, match="already been entered"):
        async with scope:
            pass
    with pytest.raises(RuntimeError, match="not running"):
        scope.start_soon(anyio.sleep, 0)


def test_task_settings_are_read_only() -> None:
    """Regression: ``t.max_subprocesses = 0`` before entry gave a 0-slot limiter, unchecked."""
    task = corral.task("t", max_subprocesses=2, kill_grace=0.5, max_sandboxes=3)
    with pytest.raises(AttributeError):
        task.max_subprocesses = 0  # type: ignore[misc]
    with pytest.raises(AttributeError):
        task.kill_grace = -3  # type: ignore[misc]
    with pytest.raises(AttributeError):
        task.name = "other"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        task.sandbox = None  # type: ignore[misc]
    with pytest.raises(AttributeError):
        task.anything = 1  # type: ignore[attr-defined]
    assert (task.name, task.max_subprocesses, task.kill_grace, task.max_sandboxes) == (
        "t",
        2,
        0.5,
        3,
    )
    assert task.sandbox is None
    assert task.sandbox_cleanup is True


async def test_start_takes_the_arguments_its_function_does() -> None:
    async def server(port: int, *, task_status: anyio.abc.TaskStatus[str]) -> None:
        task_status.started(f"listening on {port}")

    async with corral.task("t") as task:
        assert await task.start(server, 8080) == "listening on 8080"

    async def not_run(task: corral.Task) -> None:
        # Checked by mypy (strict: an ignore that is not needed is an error).
        await task.start(server, "8080")  # type: ignore[arg-type]
        await task.start(anyio.sleep, 1)  # type: ignore[arg-type]

    assert not_run is not None


def test_task_has_no_public_constructor() -> None:
    with pytest.raises(TypeError, match="no public constructor"):
        corral.Task("t", None, None, None, None, True, True)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"name": 3}, TypeError, "name must be a str"),
        ({"name": ""}, ValueError, "name must not be empty"),
        ({"name": "t", "max_subprocesses": 0}, ValueError, "max_subprocesses must be >= 1"),
        ({"name": "t", "max_subprocesses": 2.0}, TypeError, "max_subprocesses must be an int"),
        ({"name": "t", "kill_grace": -1}, ValueError, "kill_grace must be >= 0"),
        ({"name": "t", "kill_grace": "2"}, TypeError, "kill_grace must be a number"),
        ({"name": "t", "kill_grace": float("inf")}, ValueError, "kill_grace must be a finite"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        corral.task(**kwargs)  # type: ignore[arg-type]


def test_repr_shows_state() -> None:
    assert repr(corral.task("demo")) == "<corral Task 'demo' new>"
