"""collect() and background(): concurrent work, results in order; work as long as a sample."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest

import corral
from corral.util import (
    InfoEvent,
    LimitExceededError,
    SpanBeginEvent,
    background,
    collect,
    store,
    store_from_events,
    time_limit,
    transcript,
)
from tests.support.clock import virtual_backend

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    """Both backends, each with a virtual clock."""
    return virtual_backend(request.param)


async def _after(seconds: float, value: str) -> str:
    await anyio.sleep(seconds)
    return value


# collect ------------------------------------------------------------------------------------


async def test_collect_returns_results_in_order_and_runs_concurrently() -> None:
    start = anyio.current_time()
    results = await collect(_after(3, "a"), _after(1, "b"), _after(2, "c"))
    assert results == ["a", "b", "c"]
    assert anyio.current_time() - start == pytest.approx(3)


async def test_collect_of_nothing_is_an_empty_list() -> None:
    assert await collect() == []


async def test_the_first_error_cancels_the_rest_and_is_raised_bare() -> None:
    cancelled: list[str] = []

    async def forever(name: str) -> None:
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.append(name)
            raise

    async def fail() -> None:
        await anyio.sleep(1)
        raise ValueError("boom")

    start = anyio.current_time()
    with pytest.raises(ValueError, match="boom"):
        await collect(forever("x"), fail(), forever("y"))
    assert anyio.current_time() - start == pytest.approx(1)
    assert sorted(cancelled) == ["x", "y"]


async def test_an_error_keeps_its_own_cause_and_context() -> None:
    async def fail() -> None:
        try:
            raise KeyError("inner")
        except KeyError as exc:
            raise ValueError("outer") from exc

    with pytest.raises(ValueError, match="outer") as info:
        await collect(fail())
    assert isinstance(info.value.__cause__, KeyError)
    assert isinstance(info.value.__context__, KeyError)


async def test_cancelling_the_caller_cancels_every_awaitable() -> None:
    cancelled = 0

    async def forever() -> None:
        nonlocal cancelled
        try:
            await anyio.sleep_forever()
        finally:
            cancelled += 1

    with anyio.move_on_after(5) as scope:
        await collect(forever(), forever())
    assert scope.cancelled_caught
    assert cancelled == 2


async def test_each_awaitable_runs_in_a_span_of_its_own() -> None:
    async def note(value: int) -> int:
        transcript().info(value)
        await anyio.lowlevel.checkpoint()
        store().set(f"k{value}", value)
        return value

    async with corral.task("t") as task, task.sample(1) as sample:
        assert await collect(note(1), note(2)) == [1, 2]
    events = sample.transcript.events
    sample_span = next(e for e in events if isinstance(e, SpanBeginEvent) and e.type == "sample")
    spans = {e.name: e for e in events if isinstance(e, SpanBeginEvent) and e.type == "task"}
    assert sorted(spans) == ["task-1", "task-2"]
    assert {e.parent_id for e in spans.values()} == {sample_span.id}
    infos = [(e.data, e.span_id) for e in events if isinstance(e, InfoEvent)]
    assert sorted(infos) == [(1, spans["task-1"].id), (2, spans["task-2"].id)]
    assert store_from_events(events) == {"k1": 1, "k2": 2}


async def test_a_limit_inside_collect_cancels_only_its_awaitable() -> None:
    async def limited() -> str:
        with time_limit(1):
            await anyio.sleep_forever()
        return "never"

    with pytest.raises(LimitExceededError):
        await collect(limited(), _after(5, "late"))


# background ---------------------------------------------------------------------------------


async def test_background_outside_a_sample_is_an_error() -> None:
    async def work() -> None:
        pass

    with pytest.raises(RuntimeError, match=r"background\(\) must be called inside a sample"):
        background(work)
    async with corral.task("t"):
        with pytest.raises(RuntimeError, match=r"inside a sample"):
            background(work)


async def test_background_work_is_cancelled_when_the_sample_ends() -> None:
    """Nothing is left running: the scope exits only once the work has finished."""
    events: list[str] = []
    started = anyio.Event()

    async def work(name: str, count: int) -> None:
        events.append(f"{name} {count}")
        store().set("seen", True)
        started.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            events.append("cancelled")
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.sleep(2)  # cleanup that takes time: the sample waits for it
            events.append("finished")

    async with corral.task("t") as task:
        start = anyio.current_time()
        async with task.sample(1) as sample:
            background(work, "w", 3)
            await started.wait()
            assert events == ["w 3"]
        assert events == ["w 3", "cancelled", "finished"]
        assert anyio.current_time() - start == pytest.approx(2)
    assert store_from_events(sample.transcript.events) == {"seen": True}
    assert sample.transcript.events[-1].event == "span_end"


async def test_a_body_error_leaves_the_sample_bare_and_cancels_background_work() -> None:
    cancelled = anyio.Event()

    async def work() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    async with corral.task("t") as task:
        with pytest.raises(KeyError, match="body"):  # noqa: PT012
            async with task.sample(1):
                background(work)
                await anyio.lowlevel.checkpoint()
                raise KeyError("body")
    assert cancelled.is_set()


async def test_a_background_error_cancels_the_body_and_fails_the_sample(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reached = False

    async def fail() -> None:
        await anyio.sleep(1)
        raise ValueError("background broke")

    async with corral.task("t") as task:
        start = anyio.current_time()
        with pytest.raises(ValueError, match="background broke"):  # noqa: PT012
            async with task.sample(1):
                background(fail)
                await anyio.sleep(100)
                reached = True
        assert anyio.current_time() - start == pytest.approx(1)
        async with task.sample(2):  # the task goes on
            pass
    assert not reached
    assert [r.levelno for r in caplog.records if "background broke" in r.getMessage()] == [
        logging.ERROR
    ]


async def test_a_samples_time_limit_cancels_its_background_work() -> None:
    cancelled = anyio.Event()

    async def work() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    async with corral.task("t") as task:
        with pytest.raises(TimeoutError, match="time limit"):  # noqa: PT012
            async with task.sample(1, time_limit=3):
                background(work)
                await anyio.sleep_forever()
    assert cancelled.is_set()
