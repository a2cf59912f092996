"""Every trace record says where it was written: ``task``, ``sample_id``, ``span_id``."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import corral
from corral.tracing import _install
from corral.tracing._context import current_context
from corral.util import span, span_id_provider, subprocess, subtask, trace_action, trace_message
from corral.util import transcript as current_transcript

from .test_install import isolate, read_records

pytestmark = pytest.mark.anyio

LOG = logging.getLogger("corral.tests.context")


@pytest.fixture(autouse=True)
def trace_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    yield isolate(tmp_path, monkeypatch)
    _install._reset_for_tests()


def _where(record: dict[str, Any]) -> tuple[Any, Any, Any]:
    return record["task"], record["sample_id"], record["span_id"]


def _sample_span_id() -> str:
    """The id of the running sample's own span (its first ``SpanBeginEvent``)."""
    begins = [e for e in current_transcript().events if e.event == "span_begin"]
    return begins[0].id


@pytest.fixture(params=["direct", "logged"])
def path_kind(request: pytest.FixtureRequest) -> Iterator[str]:
    """Records written straight to the file, or (``logged``) through ``Logger.handle``."""
    if request.param == "logged":
        LOG.addFilter(lambda record: True)
    yield str(request.param)
    LOG.filters.clear()


async def test_records_outside_any_task_carry_nulls(trace_path: Path, path_kind: str) -> None:
    with trace_action(LOG, "Outside", "nothing"):
        trace_message(LOG, "Outside", "note")
    LOG.info("info outside")
    records = read_records(trace_path)
    assert len(records) == 4
    for record in records:
        assert _where(record) == (None, None, None)


async def test_records_in_a_task_outside_a_sample_name_the_task(
    trace_path: Path, path_kind: str
) -> None:
    async with corral.task("grading"):
        with trace_action(LOG, "InTask", "setup"):
            trace_message(LOG, "InTask", "note")
    records = read_records(trace_path)
    assert len(records) == 3
    for record in records:
        assert _where(record) == ("grading", None, None)


async def test_records_in_a_sample_name_task_sample_and_span(
    trace_path: Path, path_kind: str
) -> None:
    async with corral.task("grading") as task, task.sample("s-1"):
        sample_span = _sample_span_id()
        with trace_action(LOG, "InSample", "step"):
            trace_message(LOG, "InSample", "note")
        LOG.info("info in the sample")
        async with span("inner", id="my-span"):
            trace_message(LOG, "InSpan", "deeper")
        trace_message(LOG, "InSample", "after the span")
    enter, note, exit_, info, deeper, after = read_records(trace_path)
    for record in (enter, note, exit_, info, after):
        assert _where(record) == ("grading", "s-1", sample_span)
    assert _where(deeper) == ("grading", "s-1", "my-span")


async def test_an_int_sample_id_stays_an_int(trace_path: Path, path_kind: str) -> None:
    async with corral.task("t") as task, task.sample(7):
        trace_message(LOG, "Int", "x")
    [record] = read_records(trace_path)
    assert record["sample_id"] == 7


async def test_the_finish_record_says_where_the_action_started(trace_path: Path) -> None:
    """An action's two records carry the same place, even when it is left elsewhere."""
    async with corral.task("t") as task, task.sample(1):
        action = trace_action(LOG, "Moved", "x")
        async with span("inner", id="inner"):
            action.__enter__()
        action.__exit__(None, None, None)
    enter, exit_ = read_records(trace_path)
    assert _where(enter) == _where(exit_) == ("t", 1, "inner")


async def test_span_ids_from_a_provider_are_recorded(trace_path: Path) -> None:
    async def ids(name: str, parent: str | None, requested: str | None) -> str:
        return f"stable-{name}"

    with span_id_provider(ids):
        async with corral.task("t") as task, task.sample(1), span("step"):
            trace_message(LOG, "Provided", "x")
    [record] = read_records(trace_path)
    assert record["span_id"] == "stable-step"


async def test_concurrent_samples_carry_their_own_ids(trace_path: Path) -> None:
    """Samples running at once (each started before any finishes) never swap ids."""
    count = 6
    all_started = anyio.Event()
    started = 0

    async with corral.task("many") as task:

        async def one(n: int) -> None:
            nonlocal started
            async with task.sample(f"sample-{n}"):
                started += 1
                if started == count:
                    all_started.set()
                await all_started.wait()
                with trace_action(LOG, "Work", "of sample-%d", n):
                    await anyio.lowlevel.checkpoint()
                    await subprocess(["echo", f"sample-{n}"])
                    trace_message(LOG, "Work", "sample-%d done", n)

        for n in range(count):
            task.start_soon(one, n)
    records = read_records(trace_path)
    assert len(records) == 5 * count  # Work enter/exit, Subprocess enter/exit, the message
    spans: dict[str, set[str]] = {}
    for record in records:
        owner = next(f"sample-{n}" for n in range(count) if f"sample-{n}" in record["message"])
        assert record["task"] == "many"
        assert record["sample_id"] == owner, record
        spans.setdefault(owner, set()).add(record["span_id"])
    assert all(len(ids) == 1 for ids in spans.values())
    assert len({next(iter(ids)) for ids in spans.values()}) == count  # a span per sample


async def test_a_subtask_runs_in_a_span_of_its_own(trace_path: Path) -> None:
    @subtask
    async def solve(n: int) -> None:
        await subprocess(["echo", f"solve-{n}"])

    async with corral.task("t") as task, task.sample(3):
        sample_span = _sample_span_id()
        await solve(1)
        await solve(2)
    finishes = [r for r in read_records(trace_path) if r.get("event") == "exit"]
    subtasks = [r for r in finishes if r["action"] == "Subtask"]
    procs = [r for r in finishes if r["action"] == "Subprocess"]
    assert [_where(r) for r in subtasks] == [("t", 3, sample_span)] * 2
    assert [r["sample_id"] for r in procs] == [3, 3]
    inner = [r["span_id"] for r in procs]
    assert sample_span not in inner
    assert len(set(inner)) == 2  # the two identical subtasks can be told apart


async def test_the_context_is_restored_after_each_scope() -> None:
    assert current_context().fields() == {"task": None, "sample_id": None, "span_id": None}
    async with corral.task("t") as task:
        assert current_context().task == "t"
        async with task.sample(1):
            assert current_context().sample_id == 1
            async with span("x", id="x"):
                assert current_context().span_id == "x"
            assert current_context().span_id not in (None, "x")
        assert current_context().fields() == {"task": "t", "sample_id": None, "span_id": None}
    assert current_context().fields() == {"task": None, "sample_id": None, "span_id": None}
