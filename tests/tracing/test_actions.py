"""``trace_action`` and ``trace_message``: events, re-raising, the action tree, threads, failures.

Async tests run under trio and under asyncio. Records are read back from the
trace file, so these tests also check what users will find there.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from corral.tracing import _actions, _install
from corral.util import TRACE, trace_action, trace_message

from .test_install import ListHandler, isolate, read_records

pytestmark = pytest.mark.anyio

LOG = logging.getLogger("corral.tests.actions")


@pytest.fixture(autouse=True)
def trace_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    yield isolate(tmp_path, monkeypatch)
    _install._reset_for_tests()


def actions(path: Path) -> list[dict[str, Any]]:
    return [r for r in read_records(path) if "action" in r]


def finish_of(records: list[dict[str, Any]], trace_id: str) -> dict[str, Any]:
    [finish] = [r for r in records if r.get("trace_id") == trace_id and r["event"] != "enter"]
    return finish


# -- records ------------------------------------------------------------------------------


def test_level_is_registered() -> None:
    assert TRACE == 13
    assert logging.getLevelName(TRACE) == "TRACE"


def test_enter_and_exit(trace_path: Path) -> None:
    with trace_action(LOG, "Work", "job %s of %d", "a", 2):
        pass
    enter, exit_ = read_records(trace_path)
    assert enter["event"] == "enter"
    assert exit_["event"] == "exit"
    for record in (enter, exit_):
        assert record["level"] == "TRACE"
        assert record["action"] == "Work"
        assert record["detail"] == "job a of 2"
        assert record["parent_id"] is None
        assert record["start_time"] == enter["start_time"]
        assert "module" not in record
    assert enter["trace_id"] == exit_["trace_id"]
    assert enter["message"] == "Work: job a of 2 (enter)"
    assert exit_["message"] == "Work: job a of 2 (exit)"
    assert "duration" not in enter
    assert 0 <= exit_["duration"] < 5
    assert "error" not in exit_


@pytest.mark.parametrize(
    ("message", "args", "kwargs", "detail"),
    [
        ("plain 100%", (), {}, "plain 100%"),
        ("%s=%d", ("n", 3), {}, "n=3"),
        ("%(name)s!", (), {"name": "kw"}, "kw!"),
        ("%d broken", ("x",), {}, "%d broken ('x',)"),
    ],
)
def test_detail(
    trace_path: Path, message: str, args: tuple[Any, ...], kwargs: dict[str, Any], detail: str
) -> None:
    with trace_action(LOG, "Detail", message, *args, **kwargs):
        pass
    assert {r["detail"] for r in read_records(trace_path)} == {detail}


def test_error_is_recorded_and_the_same_object_reraised(trace_path: Path) -> None:
    error = ValueError("boom")
    with pytest.raises(ValueError, match="boom") as caught, trace_action(LOG, "Fails", "x"):
        raise error
    assert caught.value is error
    _, finish = read_records(trace_path)
    assert finish["event"] == "error"
    assert finish["message"] == "Fails: x (error)"
    assert finish["error"] == "boom"
    assert finish["error_type"] == "ValueError"
    assert "test_error_is_recorded_and_the_same_object_reraised" in finish["stacktrace"]
    assert finish["stacktrace"].rstrip().endswith("ValueError: boom")
    assert list(finish)[-4:] == ["duration", "error", "error_type", "stacktrace"]


def test_error_without_a_message_uses_its_repr(trace_path: Path) -> None:
    with pytest.raises(LookupError), trace_action(LOG, "Fails", "x"):
        raise LookupError
    assert read_records(trace_path)[-1]["error"] == "LookupError()"


@pytest.mark.parametrize(
    ("exc", "event"),
    [
        (KeyboardInterrupt(), "cancel"),
        (SystemExit(0), "cancel"),
        (TimeoutError("slow"), "timeout"),
        (BaseExceptionGroup("all cancel", [KeyboardInterrupt(), KeyboardInterrupt()]), "cancel"),
        (ExceptionGroup("all timeouts", [TimeoutError(), TimeoutError()]), "timeout"),
        (ExceptionGroup("mixed", [TimeoutError(), ValueError()]), "error"),
    ],
)
def test_how_a_block_was_left(trace_path: Path, exc: BaseException, event: str) -> None:
    with pytest.raises(type(exc)) as caught, trace_action(LOG, "Left", "x"):
        raise exc
    assert caught.value is exc
    finish = read_records(trace_path)[-1]
    assert finish["event"] == event
    assert ("error_type" in finish) == (event == "error")


def test_a_closed_generator_exits(trace_path: Path) -> None:
    def generator() -> Generator[int, None, None]:
        with trace_action(LOG, "Gen", "g"):
            yield 1
            yield 2

    gen = generator()
    assert next(gen) == 1
    gen.close()
    assert [r["event"] for r in read_records(trace_path)] == ["enter", "exit"]
    assert _actions._current.get() is None


async def test_cancel_is_recorded(trace_path: Path) -> None:
    with anyio.CancelScope() as scope:
        with trace_action(LOG, "Cancelled", "sleep"):
            scope.cancel()
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert [r["event"] for r in read_records(trace_path)] == ["enter", "cancel"]


async def test_timeout_is_recorded_outside_and_cancel_inside(trace_path: Path) -> None:
    with (
        pytest.raises(TimeoutError),
        trace_action(LOG, "Outer", "deadline"),
        anyio.fail_after(0),
        trace_action(LOG, "Inner", "sleep"),
    ):
        await anyio.sleep_forever()
    records = actions(trace_path)
    outer = records[0]["trace_id"]
    inner = records[1]
    assert inner["parent_id"] == outer
    assert finish_of(records, inner["trace_id"])["event"] == "cancel"
    assert finish_of(records, outer)["event"] == "timeout"


# -- the tree -----------------------------------------------------------------------------


async def test_a_nursery_of_three_children_forms_a_tree(trace_path: Path) -> None:
    async def child(i: int) -> None:
        with trace_action(LOG, "Child", "child %d", i):
            await anyio.lowlevel.checkpoint()
            with trace_action(LOG, "Step", "step of %d", i):
                await anyio.lowlevel.checkpoint()

    with trace_action(LOG, "Parent", "nursery"):
        async with anyio.create_task_group() as tg:
            for i in range(3):
                tg.start_soon(child, i)
    with trace_action(LOG, "After", "sibling of the parent"):
        pass

    records = actions(trace_path)
    enters = {r["trace_id"]: r for r in records if r["event"] == "enter"}
    assert len(enters) == 8
    assert all(finish_of(records, tid)["event"] == "exit" for tid in enters)
    children: dict[str | None, list[str]] = {}
    for record in enters.values():
        children.setdefault(record["parent_id"], []).append(record["detail"])
    [parent] = [r for r in enters.values() if r["action"] == "Parent"]
    assert sorted(children[None]) == ["nursery", "sibling of the parent"]
    assert sorted(children[parent["trace_id"]]) == ["child 0", "child 1", "child 2"]
    for record in enters.values():
        if record["action"] == "Child":
            assert children[record["trace_id"]] == [f"step of {record['detail'][-1]}"]
    assert _actions._current.get() is None


async def test_a_worker_thread_inherits_the_action(trace_path: Path) -> None:
    def work() -> str:
        with trace_action(LOG, "InThread", "work"):
            return threading.current_thread().name

    with trace_action(LOG, "Async", "outer"):
        name = await anyio.to_thread.run_sync(work)
    assert name != threading.current_thread().name
    outer, inner = (r for r in actions(trace_path) if r["event"] == "enter")
    assert inner["parent_id"] == outer["trace_id"]


def test_threads_trace_concurrently(trace_path: Path) -> None:
    def work(n: int) -> None:
        for i in range(100):
            with trace_action(LOG, "Outer", "t%d.%d", n, i), trace_action(LOG, "Inner", "x"):
                trace_message(LOG, "Msg", "t%d", n)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    records = read_records(trace_path)
    assert len(records) == 6 * 100 * 5
    enters = {r["trace_id"]: r for r in records if r.get("event") == "enter"}
    assert len(enters) == 6 * 100 * 2
    for record in enters.values():
        if record["action"] == "Outer":
            assert record["parent_id"] is None
        else:
            assert enters[record["parent_id"]]["action"] == "Outer"
        assert finish_of(records, record["trace_id"])["event"] == "exit"


# -- when not to trace --------------------------------------------------------------------


def test_a_disabled_logger_only_runs_the_block(trace_path: Path) -> None:
    quiet = logging.getLogger("corral.tests.quiet")
    quiet.setLevel(logging.INFO)
    try:
        with trace_action(quiet, "Skipped", "%s", "x"):
            assert _actions._current.get() is None
            trace_message(quiet, "Skipped", "y")
            result = 42
    finally:
        quiet.setLevel(logging.NOTSET)
    assert result == 42
    assert read_records(trace_path) == []


def test_other_loggers_get_ordinary_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trace_path = isolate(tmp_path, monkeypatch)
    other = logging.getLogger("not_corral.tests.actions")
    handler = ListHandler()
    other.addHandler(handler)
    other.setLevel(TRACE)
    try:
        with trace_action(other, "Mine", "detail %d", 1):
            trace_message(other, "Cat", "said %s", "hi")
    finally:
        other.removeHandler(handler)
        other.setLevel(logging.NOTSET)
    enter, message, exit_ = handler.records
    assert (enter.levelno, enter.getMessage()) == (TRACE, "Mine: detail 1 (enter)")
    assert vars(enter)["event"] == "enter"
    assert vars(exit_)["trace_id"] == vars(enter)["trace_id"]
    assert message.getMessage() == "[Cat] said hi"
    assert (message.msg, message.args) == ("[Cat] said %s", ("hi",))  # formatted lazily
    # ... and the same three went to the trace file, once each.
    written = read_records(trace_path)
    assert [r["message"] for r in written] == [
        "Mine: detail 1 (enter)",
        "[Cat] said hi",
        "Mine: detail 1 (exit)",
    ]
    _install._reset_for_tests()


# -- tracing never breaks the traced code -------------------------------------------------


class Exploding(logging.Handler):
    def handle(self, record: logging.LogRecord) -> bool:
        raise RuntimeError("handler is broken")

    def emit(self, record: logging.LogRecord) -> None:  # pragma: no cover - never called
        raise AssertionError


def test_a_failing_handler_is_reported_once_and_tracing_stops(
    trace_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = Exploding()
    LOG.addHandler(broken)
    try:
        with trace_action(LOG, "Traced", "first"):
            first = "ran"
        with pytest.raises(KeyError) as caught, trace_action(LOG, "Traced", "second"):
            raise KeyError("mine")
        trace_message(LOG, "Traced", "third")
    finally:
        LOG.removeHandler(broken)
    assert first == "ran"
    assert caught.value.args == ("mine",)
    assert _actions.is_off()
    assert _install._handler is None
    assert logging.getLogger("corral").propagate is True
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("corral: tracing failed at the start of action 'Traced'; it is off")
    assert "RuntimeError: handler is broken" in err
    assert _actions._current.get() is None


def test_a_failing_handler_at_exit_does_not_mask_the_exception(
    trace_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = Exploding()
    error = OSError("the traced code's own error")

    def break_logging_then_fail() -> None:
        LOG.addHandler(broken)
        raise error

    try:
        with pytest.raises(OSError, match="own error") as caught, trace_action(LOG, "Traced", "x"):
            break_logging_then_fail()
    finally:
        LOG.removeHandler(broken)
    assert caught.value is error
    assert "at the end of action 'Traced'" in capsys.readouterr().err


def test_message_kwargs_go_to_logging(trace_path: Path) -> None:
    trace_message(LOG, "Kw", "with %s", "extra", extra={"sample": 7}, stacklevel=1)
    [record] = read_records(trace_path)
    assert record["message"] == "[Kw] with extra"
    assert record["sample"] == 7
