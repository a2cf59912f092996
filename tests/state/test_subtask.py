"""subtask: isolated store and transcript, recorded as a SubtaskEvent."""

from __future__ import annotations

import anyio
import pytest

import corral
from corral.util import Store, SubtaskEvent, span, store, store_from_events, subtask, transcript

pytestmark = pytest.mark.anyio


async def test_subtask_has_its_own_store() -> None:
    @subtask
    async def child() -> object:
        seen = dict(store().items())
        store().set("x", 84)
        return seen

    async with corral.task("t") as task, task.sample(1) as sample:
        store().set("x", 42)
        assert await child() == {}
        assert store().get("x") == 42
    (event,) = [e for e in sample.transcript.events if isinstance(e, SubtaskEvent)]
    assert event.name == "child"
    assert event.result == {}
    assert event.completed is not None
    assert event.working_time is not None
    inner = [e.event for e in event.events]
    assert inner == ["span_begin", "store", "span_end"]


async def test_subtask_records_input_by_parameter_name() -> None:
    @subtask(name="scorer", type="scoring")
    async def score(answer: str, *, weight: float = 1.0) -> float:
        return len(answer) * weight

    async with corral.task("t") as task, task.sample(1) as sample:
        assert await score("abc", weight=2.0) == 6.0
    (event,) = [e for e in sample.transcript.events if isinstance(e, SubtaskEvent)]
    assert (event.name, event.type) == ("scorer", "scoring")
    assert event.input == {"answer": "abc", "weight": 2.0}
    assert event.result == 6.0


async def test_explicit_input_and_store() -> None:
    shared = Store({"seed": 1})

    @subtask("explicit", store=shared, input={"shown": True})
    async def work(hidden: int) -> None:
        store().set("seed", store().get("seed") + hidden)

    async with corral.task("t") as task, task.sample(1) as sample:
        await work(5)
        await work(5)
    assert shared.get("seed") == 11
    events = [e for e in sample.transcript.events if isinstance(e, SubtaskEvent)]
    assert [e.input for e in events] == [{"shown": True}, {"shown": True}]


async def test_nested_subtasks() -> None:
    @subtask
    async def leaf() -> str:
        transcript().info("in leaf")
        return "leaf"

    @subtask
    async def branch() -> str:
        return await leaf() + "+branch"

    async with corral.task("t") as task, task.sample(1) as sample:
        assert await branch() == "leaf+branch"
    (outer,) = [e for e in sample.transcript.events if isinstance(e, SubtaskEvent)]
    (inner,) = [e for e in outer.events if isinstance(e, SubtaskEvent)]
    assert inner.name == "leaf"
    assert [e.event for e in inner.events] == ["span_begin", "info", "span_end"]


async def test_exception_propagates_unwrapped_and_is_recorded() -> None:
    @subtask
    async def broken() -> None:
        raise KeyError("missing")

    async with corral.task("t") as task, task.sample(1) as sample:
        with pytest.raises(KeyError, match="missing"):
            await broken()
    (event,) = [e for e in sample.transcript.events if isinstance(e, SubtaskEvent)]
    assert event.error == "KeyError: 'missing'"
    assert event.result is None


async def test_cancelling_the_caller_cancels_the_subtask() -> None:
    cancelled = False

    @subtask
    async def slow() -> None:
        nonlocal cancelled
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled = True
            raise

    async with corral.task("t") as task, task.sample(1):
        with anyio.CancelScope() as scope:
            task.start_soon(_cancel_when_blocked, scope)
            await slow()
    assert cancelled
    assert scope.cancelled_caught


async def _cancel_when_blocked(scope: anyio.CancelScope) -> None:
    await anyio.wait_all_tasks_blocked()
    scope.cancel()


async def test_subtask_span_is_in_its_own_transcript() -> None:
    @subtask
    async def child() -> None:
        async with span("step"):
            store().set("k", 1)

    async with corral.task("t") as task, task.sample(1) as sample:
        await child()
    outer_names = [getattr(e, "name", None) for e in sample.transcript.events]
    assert "step" not in outer_names
    (event,) = [e for e in sample.transcript.events if isinstance(e, SubtaskEvent)]
    assert "step" in [getattr(e, "name", None) for e in event.events]


async def test_non_async_callable_is_refused_at_call_time() -> None:
    def not_async() -> int:
        return 1

    wrapped = subtask(not_async)  # type: ignore[arg-type, var-annotated]
    with pytest.raises(TypeError, match=r"'not_async' is not declared as an async callable\."):
        await wrapped()


async def test_subtask_events_rebuild_the_subtask_store() -> None:
    @subtask
    async def child() -> None:
        store().set("k", [1])
        store().get("k").append(2)

    async with corral.task("t") as task, task.sample(1) as sample, span("caller"):
        await child()
    (event,) = [e for e in sample.transcript.events if isinstance(e, SubtaskEvent)]
    assert store_from_events(event.events) == {"k": [1, 2]}
