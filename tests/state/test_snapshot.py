"""span() and the store changes it records as JSON Patch."""

from __future__ import annotations

import copy
import json
import uuid

import jsonpatch
import jsonpointer
import pytest

import corral
from corral._state._events import InfoEvent, JsonChange
from corral.util import (
    Event,
    SpanBeginEvent,
    SpanEndEvent,
    Store,
    StoreEvent,
    span,
    store,
    store_from_events,
    transcript,
)

pytestmark = pytest.mark.anyio


def _ops(event: object) -> list[dict[str, object]]:
    assert isinstance(event, StoreEvent)
    return [c.model_dump(by_alias=True, exclude_none=True) for c in event.changes]


async def _changes_of(initial: dict[str, object], body: object) -> list[dict[str, object]]:
    """Run *body(store)* inside a span of a fresh sample; return the span's changes."""
    async with corral.task("t") as task, task.sample(1, store=initial) as sample:
        async with span("under test"):
            body(store())  # type: ignore[operator]
        events = list(sample.transcript.events)
    store_events = [
        e for e in events if isinstance(e, StoreEvent) and e.span_id == events[2].span_id
    ]
    return _ops(store_events[0]) if store_events else []


async def test_span_records_begin_store_end_in_order() -> None:
    async with corral.task("t") as task, task.sample("s") as sample:
        async with span("work", type="solver"):
            store().set("x", 1)
        events = list(sample.transcript.events)
    begin, inner_begin, inner_store, inner_end = events[:4]
    assert isinstance(begin, SpanBeginEvent)
    assert begin.type == "sample"
    assert isinstance(inner_begin, SpanBeginEvent)
    assert (inner_begin.name, inner_begin.type, inner_begin.parent_id) == (
        "work",
        "solver",
        begin.id,
    )
    assert isinstance(inner_store, StoreEvent)
    assert inner_store.span_id == inner_begin.id
    assert _ops(inner_store) == [{"op": "add", "path": "/x", "value": 1}]
    assert isinstance(inner_end, SpanEndEvent)
    assert inner_end.id == inner_begin.id


async def test_in_place_mutation_of_nested_values_is_caught() -> None:
    def body(s: Store) -> None:
        s.get("a")["b"]["c"].append(4)

    ops = await _changes_of({"a": {"b": {"c": [1, 2, 3]}}}, body)
    assert ops == [{"op": "add", "path": "/a/b/c/3", "value": 4}]


@pytest.mark.parametrize(
    ("initial", "mutate", "expected"),
    [
        # list insert, replace, pop
        (
            {"l": [1, 2, 3]},
            lambda s: s.get("l").insert(0, 0),
            [{"op": "add", "path": "/l/0", "value": 0}],
        ),
        (
            {"l": [1, 2, 3]},
            lambda s: s.get("l").__setitem__(1, 20),
            [{"op": "replace", "path": "/l/1", "value": 20, "replaced": 2}],
        ),
        ({"l": [1, 2, 3]}, lambda s: s.get("l").pop(), [{"op": "remove", "path": "/l/2"}]),
        # top-level add / replace / remove
        ({}, lambda s: s.set("k", {"v": 1}), [{"op": "add", "path": "/k", "value": {"v": 1}}]),
        (
            {"k": 1},
            lambda s: s.set("k", 2),
            [{"op": "replace", "path": "/k", "value": 2, "replaced": 1}],
        ),
        ({"k": 1}, lambda s: s.delete("k"), [{"op": "remove", "path": "/k"}]),
        # a change of type that == cannot see
        (
            {"k": 1},
            lambda s: s.set("k", True),
            [{"op": "replace", "path": "/k", "value": True, "replaced": 1}],
        ),
        # keys needing RFC 6901 escapes
        ({}, lambda s: s.set("a/b~c", 1), [{"op": "add", "path": "/a~1b~0c", "value": 1}]),
        # nothing changed
        ({"k": [1]}, lambda s: s.get("k"), []),
    ],
)
async def test_json_patch_ops(
    initial: dict[str, object], mutate: object, expected: list[dict[str, object]]
) -> None:
    assert await _changes_of(initial, mutate) == expected


async def test_nested_change_between_equal_numbers_is_seen() -> None:
    """``1 -> True`` nested is a change, alone or with others (``==`` would miss it alone)."""
    alone = await _changes_of({"k": {"n": 1}}, lambda s: s.get("k").__setitem__("n", True))
    assert alone == [{"op": "replace", "path": "/k/n", "value": True, "replaced": 1}]

    def two_changes(s: Store) -> None:
        s.get("k")["n"] = True
        s.get("k")["m"] = 2

    ops = await _changes_of({"k": {"n": 1}}, two_changes)
    assert {"op": "replace", "path": "/k/n", "value": True, "replaced": 1} in ops
    assert {"op": "add", "path": "/k/m", "value": 2} in ops


async def test_replaced_values_follow_index_shifts() -> None:
    """Each ``replaced`` is the value at its path just before that operation."""

    def body(s: Store) -> None:
        lst = s.get("l")
        lst.insert(0, "new")  # shifts every index by one
        lst[2] = "B"  # replaces what was at index 1 before the insert
        lst[3] = "C"

    ops = await _changes_of({"l": ["a", "b", "c"]}, body)
    assert any(op["op"] == "replace" for op in ops)
    work: dict[str, object] = {"l": ["a", "b", "c"]}
    for op in ops:
        if op["op"] == "replace":
            assert op["replaced"] == jsonpointer.resolve_pointer(work, str(op["path"]))
        plain = {k: v for k, v in op.items() if k != "replaced"}
        work = jsonpatch.apply_patch(work, [plain], in_place=True)
    assert work == {"l": ["new", "a", "B", "C"]}


async def test_changes_are_recorded_when_the_body_raises() -> None:
    async with corral.task("t") as task, task.sample(1) as sample:
        with pytest.raises(ZeroDivisionError):  # noqa: PT012
            async with span("fails"):
                store().set("partial", "work")
                1 / 0  # noqa: B018
        events = list(sample.transcript.events)
    kinds = [e.event for e in events]
    assert kinds == ["span_begin", "span_begin", "store", "span_end"]
    assert _ops(events[2]) == [{"op": "add", "path": "/partial", "value": "work"}]


async def test_nested_spans_repeat_inner_changes_and_rebuild_once() -> None:
    async with corral.task("t") as task, task.sample(1) as sample, span("outer"):
        store().set("a", 1)
        async with span("inner"):
            store().set("b", 2)
    log = sample.log()
    store_events = [e for e in log.events if isinstance(e, StoreEvent)]
    assert len(store_events) == 3  # inner, outer, sample
    assert store_from_events(log.events) == {"a": 1, "b": 2}


async def test_span_outside_a_sample_uses_the_default_transcript() -> None:
    before = len(transcript().events)
    async with span("loose"):
        pass
    assert [e.event for e in transcript().events[before:]] == ["span_begin", "span_end"]


async def test_unserialisable_in_place_change_is_reported_at_span_exit() -> None:
    async with corral.task("t") as task, task.sample(1):
        store().set("l", [])
        with pytest.raises(TypeError, match="key 'l' is no longer JSON-serialisable"):
            async with span("sneaky"):
                store().get("l").append(object())
        store().get("l").clear()


def test_store_from_events_move_copy_and_errors() -> None:
    events = [
        StoreEvent(changes=[JsonChange(op="add", path="/a", value=1)]),
        StoreEvent(changes=[JsonChange(op="copy", path="/b", from_="/a")]),
        StoreEvent(changes=[JsonChange(op="move", path="/c", from_="/a")]),
    ]
    assert store_from_events(events) == {"b": 1, "c": 1}
    with pytest.raises(ValueError, match="JsonChange operation 'move' requires 'from' field"):
        store_from_events([StoreEvent(changes=[JsonChange(op="move", path="/c")])])


def test_store_from_events_ignores_nested_spans() -> None:
    root = SpanBeginEvent(id="root", name="root")
    child = SpanBeginEvent(id="child", parent_id="root", name="child")
    events: list[Event] = [
        root,
        child,
        StoreEvent(span_id="child", changes=[JsonChange(op="add", path="/only_in_child", value=1)]),
        StoreEvent(span_id="root", changes=[JsonChange(op="add", path="/x", value=2)]),
    ]
    assert store_from_events(events) == {"x": 2}


async def test_span_arguments_are_checked() -> None:
    with pytest.raises(TypeError, match="name must be a str"):
        span(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="type must be a str"):
        span("x", type=3)  # type: ignore[arg-type]


async def test_a_reference_kept_from_an_earlier_span_is_still_watched() -> None:
    async with corral.task("t") as task, task.sample(1, store={"l": [1]}) as sample:
        async with span("get"):
            kept = store().get("l")
        async with span("mutate later"):
            kept.append(2)
        mine: list[int] = []
        async with span("set"):
            store().set("mine", mine)
        async with span("mutate the caller's object"):
            mine.append(3)
        async with span("items"):
            view = dict(store().items())
        async with span("mutate through items"):
            view["l"].append(4)
    spans = _store_events_by_span(sample.transcript.events)
    assert spans["mutate later"] == [{"op": "add", "path": "/l/1", "value": 2}]
    assert spans["mutate the caller's object"] == [{"op": "add", "path": "/mine/0", "value": 3}]
    assert spans["mutate through items"] == [{"op": "add", "path": "/l/2", "value": 4}]


def test_values_never_handed_out_are_not_compared() -> None:
    """White box: the cost of a snapshot follows the keys that may have changed.

    A value the store never handed out cannot change; the snapshot does not
    even look at it (so a change made behind the store's back, through the
    private ``_data``, goes unseen: that is the proof).
    """
    from corral._state._snapshot import diff, snapshot

    s = Store({f"k{i}": {"v": i} for i in range(1000)})
    first = snapshot(s)
    s._data["k5"]["v"] = -1  # behind the store's back
    assert snapshot(s) is first
    s.get("k7")["v"] = -7
    second = snapshot(s)
    assert [c.path for c in diff(first, second)] == ["/k7/v"]


def _store_events_by_span(events: object) -> dict[str, list[dict[str, object]]]:
    names = {e.id: e.name for e in events if isinstance(e, SpanBeginEvent)}  # type: ignore[attr-defined]
    return {
        names[e.span_id]: _ops(e)
        for e in events  # type: ignore[attr-defined]
        if isinstance(e, StoreEvent) and e.span_id in names and names[e.span_id] != "sample 1"
    }


async def test_a_failed_snapshot_forgets_no_change() -> None:
    """Regression: a TypeError at span exit lost the other changes of the span."""
    async with corral.task("t") as task, task.sample(1, store={"a": 1, "l": []}) as sample:
        with pytest.raises(TypeError, match="key 'l'"):  # noqa: PT012
            async with span("bad"):
                store().set("a", 5)
                store().get("l").append(object())
        store().get("l").clear()
    assert sample.log().store == {"a": 5, "l": []}
    assert store_from_events(sample.transcript.events) == {"a": 5, "l": []}


async def test_span_end_is_recorded_when_recording_fails() -> None:
    """Regression: the TypeError at span exit left the span without its end event."""
    async with corral.task("t") as task, task.sample(1) as sample:
        store().set("l", [])
        with pytest.raises(TypeError):
            async with span("bad"):
                store().get("l").append(object())
        store().get("l").clear()
    begins = [e.id for e in sample.transcript.events if isinstance(e, SpanBeginEvent)]
    ends = [e.id for e in sample.transcript.events if isinstance(e, SpanEndEvent)]
    assert sorted(begins) == sorted(ends)


async def test_sample_inside_a_span_rebuilds_from_its_own_events() -> None:
    """Regression: a sample opened in a span had no root span of its own."""
    async with corral.task("t") as task, span("outer"), task.sample(1, store={"x": 1}) as sample:
        store().set("y", 2)
    begin = sample.transcript.events[1]
    assert isinstance(begin, SpanBeginEvent)
    assert begin.parent_id is None
    assert store_from_events(sample.transcript.events) == {"x": 1, "y": 2}


def test_store_from_events_treats_unknown_parents_as_roots() -> None:
    events: list[Event] = [
        SpanBeginEvent(id="s", parent_id="not-here", name="s"),
        StoreEvent(span_id="s", changes=[JsonChange(op="add", path="/a", value=1)]),
        StoreEvent(span_id="elsewhere", changes=[JsonChange(op="add", path="/b", value=2)]),
    ]
    assert store_from_events(events) == {"a": 1, "b": 2}


def test_event_ids_are_distinct_version_4_uuids() -> None:
    ids = [InfoEvent(data=None).uuid for _ in range(1000)]
    assert len(set(ids)) == len(ids)
    for value in ids:
        parsed = uuid.UUID(hex=value)
        assert parsed.hex == value
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


# -- a change of type alone (regression: issue 10, bug 3) ---------------------------


@pytest.mark.parametrize(
    ("before", "mutate", "after"),
    [
        ([1, 2], lambda v: v.__setitem__(0, True), [True, 2]),
        ([1, 2], lambda v: v.__setitem__(0, 1.0), [1.0, 2]),
        ({"a": [1]}, lambda v: v["a"].__setitem__(0, True), {"a": [True]}),
        ([[0, 1]], lambda v: v[0].__setitem__(1, False), [[0, False]]),
        ([True, 1.0], lambda v: v.reverse(), [1.0, True]),
    ],
)
async def test_the_log_and_the_rebuilt_store_equal_the_live_one_types_included(
    before: object, mutate: object, after: object
) -> None:
    async with corral.task("t") as task, task.sample(1) as sample:
        store().set("k", copy.deepcopy(before))
        async with span("change"):
            mutate(store().get("k"))  # type: ignore[operator]
    log = sample.log()
    live = json.dumps(dict(sample.store.items()))
    assert live == json.dumps({"k": after})
    assert json.dumps(log.store) == live
    assert json.dumps(dict(store_from_events(log.events).items())) == live


def test_many_exposed_values_are_compared_strictly_and_each_change_found() -> None:
    """The exposed keys are compared in bulk; each kind of change is still found alone."""
    from corral._state._snapshot import diff, snapshot

    s = Store({f"k{i}": {"v": [i, i / 2]} for i in range(50)})
    first = snapshot(s)
    held = {f"k{i}": s.get(f"k{i}") for i in range(50)}
    held["k3"]["v"][0] = -3  # a change of value
    held["k9"]["v"][0] = 9.0  # a change of type alone
    held["k20"]["extra"] = None  # a key added
    second = snapshot(s)
    assert sorted(second.changed) == ["k20", "k3", "k9"]
    changes = {c.path: c.value for c in diff(first, second)}
    assert json.dumps(changes, sort_keys=True) == json.dumps(
        {"/k20/extra": None, "/k3/v/0": -3, "/k9/v/0": 9.0}, sort_keys=True
    )
    assert snapshot(s) is second  # nothing changed since: the same snapshot back
    held["k40"]["v"].append(object())
    with pytest.raises(TypeError, match="key 'k40'"):
        snapshot(s)
