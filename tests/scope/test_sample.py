"""task.sample(): per-sample state, isolation, and logs that round-trip."""

from __future__ import annotations

import math
from pathlib import Path

import anyio
import pytest

import corral
from corral.util import (
    InfoEvent,
    SampleLog,
    Store,
    StoreEvent,
    Transcript,
    store,
    store_from_events,
    transcript,
)

pytestmark = pytest.mark.anyio


async def test_sample_attributes_and_context() -> None:
    async with corral.task("t") as task, task.sample(7, metadata={"q": "why"}) as sample:
        assert (sample.id, sample.metadata) == (7, {"q": "why"})
        assert store() is sample.store
        assert transcript() is sample.transcript
    assert store() is not sample.store


async def test_concurrent_samples_never_see_each_other() -> None:
    seen: dict[int, object] = {}

    async def run(task: corral.Task, n: int) -> None:
        async with task.sample(n):
            store().set("n", n)
            await anyio.wait_all_tasks_blocked()
            seen[n] = store().get("n")

    async with corral.task("t") as task:
        for n in range(5):
            task.start_soon(run, task, n)
    assert seen == {n: n for n in range(5)}


async def test_initial_store_is_recorded_and_rebuilt(tmp_path: Path) -> None:
    async with corral.task("t") as task, task.sample("a", store={"given": [1]}) as sample:
        store().get("given").append(2)
        store().set("answer", {"text": "42", "score": 1.0})
        transcript().info({"note": "done"}, source="test")
    log = sample.log()
    assert store_from_events(log.events) == sample.store
    path = tmp_path / "sample.json"
    log.write_json(path)
    back = SampleLog.read_json(path)
    assert back == log
    assert back.store == {"given": [1, 2], "answer": {"text": "42", "score": 1.0}}
    assert store_from_events(back.events) == Store(back.store)
    info = [e for e in back.events if isinstance(e, InfoEvent)]
    assert [(e.source, e.data) for e in info] == [("test", {"note": "done"})]


async def test_sample_given_a_store_object_uses_it() -> None:
    mine = Store({"k": 1})
    async with corral.task("t") as task, task.sample(1, store=mine):
        assert store() is mine


async def test_sample_span_records_changes_even_on_error() -> None:
    with pytest.raises(ExceptionGroup) as info:  # noqa: PT012
        async with corral.task("t") as task:
            scope = task.sample(1)
            async with scope as sample:
                store().set("before_error", True)
                raise RuntimeError("sample failed")
    assert info.group_contains(RuntimeError)
    last_store = [e for e in sample.transcript.events if isinstance(e, StoreEvent)][-1]
    assert [c.path for c in last_store.changes] == ["/before_error"]
    assert sample.transcript.events[-1].event == "span_end"


async def test_transcript_round_trips_through_json(tmp_path: Path) -> None:
    async with corral.task("t") as task, task.sample(1) as sample:
        store().set("x", [1, {"y": None}])
        transcript().info("plain text")
    path = tmp_path / "t.json"
    sample.transcript.write_json(path)
    back = Transcript.read_json(path)
    assert list(back.events) == list(sample.transcript.events)
    assert {e.event for e in back.events} == {"span_begin", "store", "info", "span_end"}


async def test_sample_needs_a_running_task() -> None:
    task = corral.task("t")
    with pytest.raises(RuntimeError, match="not running"):
        task.sample(1)


async def test_a_sample_scope_is_entered_once() -> None:
    async with corral.task("t") as task:
        scope = task.sample(1)
        async with scope:
            pass
        with pytest.raises(RuntimeError, match="already been entered"):
            async with scope:
                pass


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"id": 1.5}, "id must be an int or a str"),
        ({"id": True}, "id must be an int or a str"),
        ({"id": 1, "metadata": [1]}, "metadata must be a dict"),
        ({"id": 1, "metadata": {"x": object()}}, "metadata must be JSON-serialisable"),
        ({"id": 1, "store": [1]}, "store must be a Store"),
    ],
)
async def test_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    async with corral.task("t") as task:
        with pytest.raises(TypeError, match=match):
            task.sample(**kwargs)  # type: ignore[arg-type]


async def test_time_limit_cancels_the_body_and_raises_timeout_error() -> None:
    reached = False
    async with corral.task("t") as task:
        with pytest.raises(TimeoutError, match=r"sample 'slow' exceeded its time limit of 0\.1"):  # noqa: PT012
            async with task.sample("slow", time_limit=0.1) as sample:
                store().set("started", True)
                await anyio.sleep_forever()
                reached = True
        # The task itself is not cancelled: it goes on.
        async with task.sample("next", time_limit=10) as other:
            store().set("ok", 1)
    assert not reached
    assert sample.log().store == {"started": True}
    assert store_from_events(sample.transcript.events) == {"started": True}
    assert sample.transcript.events[-1].event == "span_end"
    assert other.store == {"ok": 1}


async def test_negative_time_limit_is_refused() -> None:
    async with corral.task("t") as task:
        with pytest.raises(ValueError, match="time_limit must be >= 0"):
            task.sample(1, time_limit=-1)


async def test_a_failing_span_exit_does_not_leave_the_time_limit_behind() -> None:
    """Bug 1: the sample's time-limit scope was never exited when its span exit raised.

    The deadline went on applying to the rest of the task body, then trio
    reported "Cancel scope stack corrupted" (asyncio: a cancel scope exited in
    the wrong task).
    """
    async with corral.task("t") as task:
        assert anyio.current_effective_deadline() == math.inf
        value: list[object] = [1]
        with pytest.raises(TypeError, match="no longer JSON-serialisable"):  # noqa: PT012
            async with task.sample(1, time_limit=5):
                store().set("k", value)
                value.append(object())  # changed in place into something that is not JSON
        assert anyio.current_effective_deadline() == math.inf
        await anyio.lowlevel.checkpoint()
    assert anyio.current_effective_deadline() == math.inf
