"""throttle(): leading call, window coalescing, trailing fire under trio and asyncio.

Every async test runs in virtual time: trio with an autojumping ``MockClock``,
asyncio with :class:`VirtualTimeLoop`. Windows are long (an hour), so no real
time passes and nothing depends on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable
from typing import Any

import anyio
import pytest
import trio
import trio.testing

import corral
from corral.util import _throttle
from corral.util._throttle import throttle
from tests.support.clock import VirtualTimeLoop, jump, virtual_backend

pytestmark = pytest.mark.anyio

HOUR = 3600.0


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    """Both backends, each with a virtual clock."""
    return virtual_backend(request.param)


def recorder() -> tuple[list[Any], Callable[[Any], str]]:
    calls: list[Any] = []

    def record(value: Any) -> str:
        calls.append(value)
        return f"result {value}"

    return calls, record


async def test_first_call_runs_and_returns_its_result() -> None:
    calls, record = recorder()
    f = throttle(HOUR)(record)
    async with corral.task("t"):
        assert f(1) == "result 1"
        assert calls == [1]


async def test_calls_in_the_window_coalesce_and_the_latest_fires_at_its_end() -> None:
    calls, record = recorder()
    f = throttle(HOUR)(record)
    async with corral.task("t"):
        f(1)
        assert f(2) == "result 1"
        assert f(3) == "result 1"
        assert calls == [1]
        await anyio.sleep(HOUR / 2)
        assert calls == [1], "the trailing call ran before its window ended"
    assert calls == [1, 3]


async def test_the_trailing_result_is_returned_in_the_next_window() -> None:
    calls, record = recorder()
    f = throttle(HOUR)(record)
    async with corral.task("t"):
        f(1)
        f(2)
    assert calls == [1, 2]
    async with corral.task("t"):
        assert f(3) == "result 2"  # still inside the window the trailing call opened
    assert calls == [1, 2, 3]


async def test_no_trailing_call_without_calls_in_the_window() -> None:
    calls, record = recorder()
    f = throttle(HOUR)(record)
    async with corral.task("t"):
        f(1)
    assert calls == [1]


async def test_a_call_after_the_window_runs_the_pending_call_first_and_nothing_twice() -> None:
    """The deferred fire finds its pending call consumed and waits out the new window."""
    calls, record = recorder()
    f = throttle(HOUR)(record)
    async with corral.task("t"):
        f(1)
        f(2)
        await anyio.wait_all_tasks_blocked()  # the deferred fire is now asleep
        assert calls == [1]
        jump(HOUR)  # the window ends before the deferred fire wakes
        assert f(3) == "result 2"
        assert calls == [1, 2]
    assert calls == [1, 2, 3]


async def test_keyword_arguments_and_latest_wins() -> None:
    calls: list[tuple[int, str]] = []

    def record(x: int, *, label: str = "") -> None:
        calls.append((x, label))

    f = throttle(HOUR)(record)
    async with corral.task("t"):
        f(1, label="a")
        f(2, label="b")
        f(3)
    assert calls == [(1, "a"), (3, "")]


async def test_zero_seconds_runs_every_call() -> None:
    calls, record = recorder()
    f = throttle(0)(record)
    async with corral.task("t"):
        for n in range(3):
            assert f(n) == f"result {n}"
    assert calls == [0, 1, 2]


async def test_cancelled_task_leaves_the_call_pending_for_the_next_window() -> None:
    calls, record = recorder()
    f = throttle(HOUR)(record)
    async with corral.task("t") as task:
        f(1)
        f(2)
        task.cancel("done")
    assert calls == [1]
    async with corral.task("t"):
        await anyio.sleep(HOUR)
        f(3)  # the window is over: the pending call runs now, this one at the end
        assert calls == [1, 2]
    assert calls == [1, 2, 3]


async def test_trailing_error_propagates_out_of_the_task() -> None:
    def fail(value: int) -> int:
        if value == 2:
            raise ValueError("trailing call failed")
        return value

    f = throttle(HOUR)(fail)
    with pytest.RaisesGroup(pytest.RaisesExc(ValueError, match="trailing call failed")):
        async with corral.task("t"):
            f(1)
            f(2)
    async with corral.task("t"):  # the failed fire left nothing scheduled or pending
        await anyio.sleep(HOUR)
        assert f(3) == 3


async def test_without_a_task(anyio_backend_name: str, caplog: pytest.LogCaptureFixture) -> None:
    """asyncio runs the trailing call in a loop task; trio warns once and runs it late."""
    fired = anyio.Event()
    calls: list[int] = []

    def record(value: int) -> None:
        calls.append(value)
        if value == 3:
            fired.set()

    f = throttle(HOUR)(record)
    with caplog.at_level(logging.WARNING, logger="corral.throttle"):
        f(1)
        f(2)
        f(3)
        if anyio_backend_name == "asyncio":
            await fired.wait()
            assert calls == [1, 3]
            assert caplog.records == []
            return
        await anyio.sleep(HOUR)
        assert calls == [1]
        f(4)
        assert calls == [1, 3]
    [warning] = caplog.records
    assert "record" in warning.getMessage()
    assert "may be lost" in warning.getMessage()


async def test_trailing_error_without_a_task_is_logged(
    anyio_backend_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    logged = anyio.Event()

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.ERROR:
                logged.set()

    def fail(value: int) -> int:
        if value == 2:
            raise ValueError("trailing call failed")
        return value

    f = throttle(HOUR)(fail)
    handler = Handler()
    logging.getLogger("corral.throttle").addHandler(handler)
    try:
        with caplog.at_level(logging.WARNING, logger="corral.throttle"):
            f(1)
            f(2)
            if anyio_backend_name == "trio":  # nothing can run it: only the warning
                [warning] = caplog.records
                assert warning.levelno == logging.WARNING
                return
            await logged.wait()
    finally:
        logging.getLogger("corral.throttle").removeHandler(handler)
    [error] = caplog.records
    assert error.levelno == logging.ERROR
    assert isinstance(error.exc_info[1] if error.exc_info else None, ValueError)
    assert _throttle._loop_tasks == set()


async def test_a_closed_task_in_the_context_falls_back(
    anyio_backend_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A call running in a context copied from a task that has exited cannot use its nursery."""
    fired = anyio.Event()
    calls: list[int] = []

    def record(value: int) -> None:
        calls.append(value)
        if value == 2:
            fired.set()

    f = throttle(HOUR)(record)
    async with corral.task("t"):
        context = contextvars.copy_context()
    with caplog.at_level(logging.WARNING, logger="corral.throttle"):
        context.run(f, 1)
        context.run(f, 2)
        if anyio_backend_name == "asyncio":
            await fired.wait()  # a loop task ran it
            assert calls == [1, 2]
        else:
            assert calls == [1]
            assert "may be lost" in caplog.text


def test_outside_an_event_loop_warns_once_and_fires_late(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    now = [1000.0]
    monkeypatch.setattr(_throttle, "monotonic", lambda: now[0])
    calls, record = recorder()
    f = throttle(10)(record)
    with caplog.at_level(logging.WARNING, logger="corral.throttle"):
        assert f(1) == "result 1"
        assert f(2) == "result 1"
        assert f(3) == "result 1"
        now[0] += 10
        assert f(4) == "result 3"  # the pending call runs; this one becomes pending
        now[0] += 10
        assert f(5) == "result 4"
    assert calls == [1, 3, 4]
    assert len(caplog.records) == 1


def test_a_loop_task_cancelled_before_it_starts_does_not_block_later_trailing_calls() -> None:
    """Regression: a loop task cancelled before its first step never runs its body.

    asyncio does that to pending tasks when a loop closes. The throttle must
    learn from the task's completion that no trailing call is scheduled any more.
    """
    calls, record = recorder()
    fired = anyio.Event()

    def record_and_signal(value: int) -> str:
        if value == 3:
            fired.set()
        return record(value)

    f = throttle(HOUR)(record_and_signal)

    async def main() -> None:
        f(1)
        f(2)
        [loop_task] = _throttle._loop_tasks
        loop_task.cancel()  # before its first step, as a closing loop would
        with pytest.raises(asyncio.CancelledError):
            await loop_task
        assert calls == [1]
        await anyio.sleep(HOUR)
        f(3)  # the pending call runs now, and this one must be scheduled
        assert calls == [1, 2]
        with anyio.fail_after(2 * HOUR):  # virtual time: fails at once if 3 never fires
            await fired.wait()

    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        runner.run(main())
    assert calls == [1, 2, 3]


def test_a_new_clock_starts_a_new_window() -> None:
    """A call under another event loop run (another clock) is never 'inside' an old window."""
    calls, record = recorder()
    f = throttle(HOUR)(record)

    async def call(value: int) -> None:
        async with corral.task("t"):
            f(value)

    trio.run(call, 1, clock=trio.testing.MockClock(autojump_threshold=0))
    trio.run(call, 2, clock=trio.testing.MockClock(autojump_threshold=0))
    assert calls == [1, 2]


def test_wrapper_keeps_name_and_docstring() -> None:
    @throttle(1)
    def progress(value: int) -> int:
        """Report progress."""
        return value

    assert progress.__name__ == "progress"
    assert progress.__doc__ == "Report progress."


@pytest.mark.parametrize("seconds", [-1, -0.5, float("nan"), float("inf")])
def test_bad_seconds_value(seconds: float) -> None:
    with pytest.raises(ValueError, match="seconds"):
        throttle(seconds)


@pytest.mark.parametrize("seconds", [None, "1", True, [1]])
def test_bad_seconds_type(seconds: Any) -> None:
    with pytest.raises(TypeError, match="seconds"):
        throttle(seconds)


def test_async_function_is_refused() -> None:
    async def update_status() -> None:
        pass

    with pytest.raises(TypeError, match="update_status"):
        throttle(1)(update_status)


def test_non_callable_is_refused() -> None:
    with pytest.raises(TypeError, match="callable"):
        throttle(1)(42)  # type: ignore[arg-type]
