"""OpenTelemetry spans for traced actions (``CORRAL_OTEL=1``).

Spans go to an SDK ``TracerProvider`` made for each test, with an in-memory
exporter; it is handed to corral through the private ``_otel._provider``, so
the process-wide OpenTelemetry provider is never set.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from corral.tracing import _actions, _install, _otel
from corral.util import trace_action

from .test_install import isolate, read_records

pytestmark = pytest.mark.anyio

LOG = logging.getLogger("corral.tests.otel")


@pytest.fixture(autouse=True)
def trace_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    yield isolate(tmp_path, monkeypatch)
    _install._reset_for_tests()


@pytest.fixture
def exporter(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Spans on: ``CORRAL_OTEL=1`` and a private provider exporting to memory."""
    exported = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exported))
    monkeypatch.setenv("CORRAL_OTEL", "1")
    monkeypatch.setattr(_otel, "_provider", provider)
    yield exported
    provider.shutdown()


def by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    named = {span.name: span for span in spans}
    assert len(named) == len(spans)
    return named


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.span_id)


def parent_span_id(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


async def test_spans_nest_like_the_scopes(exporter: InMemorySpanExporter, trace_path: Path) -> None:
    async def child(i: int) -> None:
        with trace_action(LOG, f"Child{i}", "child %d", i):
            await anyio.lowlevel.checkpoint()
            with trace_action(LOG, f"Step{i}", "step"):
                await anyio.lowlevel.checkpoint()

    with trace_action(LOG, "Parent", "nursery"):
        async with anyio.create_task_group() as tg:
            for i in range(3):
                tg.start_soon(child, i)

    spans = by_name(exporter.get_finished_spans())
    assert set(spans) == {"Parent", "Child0", "Child1", "Child2", "Step0", "Step1", "Step2"}
    assert spans["Parent"].parent is None
    for i in range(3):
        assert parent_span_id(spans[f"Child{i}"]) == span_id(spans["Parent"])
        assert parent_span_id(spans[f"Step{i}"]) == span_id(spans[f"Child{i}"])

    enters = {r["action"]: r for r in read_records(trace_path) if r["event"] == "enter"}
    for name, span in spans.items():
        attributes = dict(span.attributes or {})
        assert attributes["trace_id"] == enters[name]["trace_id"]
        assert attributes["detail"] == enters[name]["detail"]
        assert attributes.get("parent_id") == enters[name]["parent_id"]
        assert attributes["event"] == "exit"
        assert span.status.status_code is StatusCode.UNSET


async def test_how_spans_end(exporter: InMemorySpanExporter) -> None:
    with pytest.raises(ValueError, match="bad"), trace_action(LOG, "Error", "x"):
        raise ValueError("bad")
    with pytest.raises(TimeoutError), trace_action(LOG, "Timeout", "x"), anyio.fail_after(0):
        await anyio.sleep_forever()
    with anyio.CancelScope() as scope, trace_action(LOG, "Cancel", "x"):
        scope.cancel()
        await anyio.sleep_forever()

    spans = by_name(exporter.get_finished_spans())
    error = spans["Error"]
    assert dict(error.attributes or {})["event"] == "error"
    assert error.status.status_code is StatusCode.ERROR
    assert error.status.description == "ValueError: bad"
    assert [event.name for event in error.events] == ["exception"]
    assert spans["Timeout"].status.status_code is StatusCode.ERROR
    assert dict(spans["Timeout"].attributes or {})["event"] == "timeout"
    cancel = spans["Cancel"]
    assert dict(cancel.attributes or {})["event"] == "cancel"
    assert cancel.status.status_code is StatusCode.UNSET
    assert cancel.events == ()


def test_spans_do_not_need_trace_records(exporter: InMemorySpanExporter, trace_path: Path) -> None:
    quiet = logging.getLogger("not_corral.tests.otel")
    quiet.setLevel(logging.WARNING)
    try:
        with trace_action(quiet, "Outer", "x"), trace_action(quiet, "Inner", "y"):
            pass
    finally:
        quiet.setLevel(logging.NOTSET)
    spans = by_name(exporter.get_finished_spans())
    assert parent_span_id(spans["Inner"]) == span_id(spans["Outer"])
    assert read_records(trace_path) == []  # the logger asked for no TRACE records


def test_no_spans_without_the_environment_variable(
    exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CORRAL_OTEL", "0")
    with trace_action(LOG, "Plain", "x"):
        pass
    assert exporter.get_finished_spans() == ()
    assert _actions._tracer_resolved
    assert _actions._tracer is None


def test_no_spans_without_opentelemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_OTEL", "1")
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # import fails
    assert _otel.resolve_tracer() is None
    with trace_action(LOG, "Plain", "x"):
        pass
    assert _actions._tracer is None
