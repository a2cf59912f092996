"""StoreModel, store_as() and store_from_events_as()."""

from __future__ import annotations

import dataclasses
import gc
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import pytest
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from corral._state._events import JsonChange, StoreEvent
from corral._state._store import Store, current_store
from corral._state._store_model import StoreModel, _coerced, store_as, store_from_events_as
from corral._state._transcript import Transcript


class Item(BaseModel):
    name: str
    done: bool = False


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Cat(BaseModel):
    kind: Literal["cat"] = "cat"
    lives: int = 9


class Dog(BaseModel):
    kind: Literal["dog"] = "dog"
    good: bool = True


class Plan(StoreModel):
    count: int = 0
    label: str = "plan"
    items: list[Item] = Field(default_factory=list)
    by_name: dict[str, Item] = Field(default_factory=dict)
    nested: Item | None = None
    point: Point | None = None
    pair: tuple[int, str] = (0, "")
    pet: Cat | Dog = Field(default_factory=Cat, discriminator="kind")
    when: datetime | None = None
    tags: list[str] = Field(default_factory=list)


PLAN_FIELDS = [
    "count",
    "label",
    "items",
    "by_name",
    "nested",
    "point",
    "pair",
    "pet",
    "when",
    "tags",
]


validated: list[list[int]] = []


def _sorted_and_counted(values: list[int]) -> list[int]:
    validated.append(values)
    return sorted(values)


class Counted(StoreModel):
    values: Annotated[list[int], AfterValidator(_sorted_and_counted)] = Field(default_factory=list)


class Derived(Plan):
    extra: int = 1


class Range(StoreModel):
    lo: int = 0
    hi: int = 10

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.lo > self.hi:
            raise ValueError(f"lo={self.lo} > hi={self.hi}")
        return self


class Inner(StoreModel):
    v: int = 0


class HoldsInnerByDefault(StoreModel):
    inner: Inner = Field(default_factory=Inner)


class MayHoldInner(StoreModel):
    inner: Inner | None = None
    inners: list[Inner] = Field(default_factory=list)


class Loose(StoreModel):
    first: int = 1
    blob: Any = None


class Aliased(StoreModel):
    n: int = Field(default=0, alias="N")


class AliasedByName(StoreModel):
    model_config = ConfigDict(populate_by_name=True)

    n: int = Field(default=0, alias="N")


class Frozen(StoreModel):
    model_config = ConfigDict(frozen=True)

    n: int = 0


class FrozenField(StoreModel):
    n: int = Field(default=0, frozen=True)


@pytest.fixture
def current() -> Iterator[Store]:
    """A fresh store as the running sample's store (``store()``)."""
    fresh = Store()
    token = current_store.set(fresh)
    try:
        yield fresh
    finally:
        current_store.reset(token)


# --- coercion -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "raw", "expected"),
    [
        ("nested", {"name": "a"}, Item(name="a")),
        (
            "items",
            [{"name": "a"}, {"name": "b", "done": True}],
            [Item(name="a"), Item(name="b", done=True)],
        ),
        ("by_name", {"k": {"name": "a"}}, {"k": Item(name="a")}),
        ("point", {"x": 1, "y": 2}, Point(1, 2)),
        ("pair", [1, "a"], (1, "a")),
        ("pet", {"kind": "dog", "good": False}, Dog(good=False)),
        ("pet", {"kind": "cat", "lives": 3}, Cat(lives=3)),
        ("when", "2024-05-01T12:00:00Z", datetime(2024, 5, 1, 12, tzinfo=UTC)),
    ],
    ids=lambda v: v if isinstance(v, str) and v in PLAN_FIELDS else "",
)
def test_raw_json_is_coerced_and_cached_back(field: str, raw: object, expected: object) -> None:
    s = Store({f"Plan:{field}": raw})
    m = Plan(store=s)
    value = getattr(m, field)
    assert value == expected
    assert type(value) is type(expected)  # and == compares members' types: Item(...) != {...}
    assert s.get(f"Plan:{field}") is value, "the coerced object replaces the raw one"
    assert getattr(m, field) is value, "later reads return the same object"
    assert getattr(Plan(store=s), field) is value, "so do other model objects"


def test_optional_none_and_scalars_are_returned_as_stored() -> None:
    tags = ["x", "y"]
    s = Store({"Plan:nested": None, "Plan:count": 5, "Plan:label": "l"})
    s.set("Plan:tags", tags)
    m = Plan(store=s)
    assert m.nested is None
    assert m.count == 5
    assert m.label == "l"
    assert m.tags is tags, "a value already of the field's type is not replaced"


def test_value_that_does_not_validate_is_returned_raw() -> None:
    s = Store({"Plan:nested": {"bogus": 1}, "Plan:count": "many"})
    m = Plan(store=s)
    nested: object = m.nested
    count: object = m.count
    assert nested == {"bogus": 1}
    assert count == "many"
    assert s.get("Plan:nested") == {"bogus": 1}


def test_field_discriminator_is_honoured() -> None:
    s = Store({"Plan:pet": {"lives": 3}})  # no "kind": a plain union would pick Cat
    pet: object = Plan(store=s).pet
    assert pet == {"lives": 3}


def test_later_reads_do_not_validate_again() -> None:
    s = Store({"Counted:values": [3, 1, 2]})
    m = Counted(store=s)
    assert m.values == [1, 2, 3]
    calls = len(validated)
    for _ in range(3):
        assert m.values == [1, 2, 3]
        assert Counted(store=s).values == [1, 2, 3]
    assert len(validated) == calls


def test_value_replaced_behind_the_model_is_coerced_afresh() -> None:
    s = Store({"Plan:nested": {"name": "old"}})
    m = Plan(store=s)
    assert m.nested == Item(name="old")
    s.set("Plan:nested", {"name": "new"})
    assert m.nested == Item(name="new")


def test_coercion_cache_is_dropped_with_the_store() -> None:
    s = Store({"Plan:nested": {"name": "a"}})
    key = id(s)
    assert Plan(store=s).nested == Item(name="a")
    assert key in _coerced
    del s
    gc.collect()
    assert key not in _coerced


# --- in-place mutation ----------------------------------------------------------------------


def test_in_place_mutation_of_a_coerced_list_persists() -> None:
    s = Store({"Plan:items": [{"name": "a"}]})
    m = Plan(store=s)
    m.items.append(Item(name="b"))
    assert s.get("Plan:items") == [Item(name="a"), Item(name="b")]
    other = Plan(store=s)
    assert other.items == [Item(name="a"), Item(name="b")]
    other.items.append(Item(name="c"))
    assert [i.name for i in m.items] == ["a", "b", "c"]


def test_in_place_mutation_of_a_nested_model_persists() -> None:
    s = Store({"Plan:nested": {"name": "a"}, "Plan:by_name": {"k": {"name": "b"}}})
    m = Plan(store=s)
    assert m.nested is not None
    m.nested.done = True
    m.by_name["k"].done = True
    assert s.get("Plan:nested") == Item(name="a", done=True)
    dumped = Plan(store=s).model_dump()
    assert dumped["nested"] == {"name": "a", "done": True}
    assert dumped["by_name"] == {"k": {"name": "b", "done": True}}


def test_default_list_is_the_stored_list() -> None:
    s = Store()
    m = Plan(store=s)
    m.tags.append("t")
    assert s.get("Plan:tags") == ["t"]


# --- construction -------------------------------------------------------------------------


def test_construction_writes_every_field_but_store_and_instance() -> None:
    s = Store()
    Plan(store=s, label="mine")
    assert set(s.keys()) == {f"Plan:{name}" for name in PLAN_FIELDS}
    assert s.get("Plan:label") == "mine"
    assert s.get("Plan:count") == 0
    assert s.get("Plan:pet") == Cat()


def test_values_already_in_the_store_win_over_arguments() -> None:
    s = Store({"Plan:count": 3})
    m = Plan(store=s, count=10, label="given")
    assert m.count == 3
    assert s.get("Plan:count") == 3
    assert m.label == "given"
    assert s.get("Plan:label") == "given"
    s.delete("Plan:count")
    assert m.count == 3, "the stored value was adopted, not the argument"


def test_value_that_is_not_json_is_refused_and_nothing_is_written() -> None:
    s = Store()
    with pytest.raises(TypeError, match="'Loose:blob'"):
        Loose(store=s, blob=object())
    assert list(s.keys()) == []


@pytest.mark.parametrize("cls", [Aliased, AliasedByName])
def test_aliased_field_is_stored_under_its_name(cls: type[Aliased | AliasedByName]) -> None:
    s = Store()
    m = cls(store=s, N=2)
    assert s.get(f"{cls.__name__}:n") == 2
    m.n = 5
    assert s.get(f"{cls.__name__}:n") == 5
    assert m.n == 5


# --- assignment ---------------------------------------------------------------------------


def test_assignment_stores_the_validated_value() -> None:
    s = Store()
    m = Plan(store=s)
    m.count = 5
    m.when = "2024-05-01T12:00:00Z"  # type: ignore[assignment]
    m.items = [{"name": "a"}]  # type: ignore[list-item]
    assert s.get("Plan:count") == 5
    assert s.get("Plan:when") == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert m.items == [Item(name="a")]
    assert s.get("Plan:items") is m.items
    assert "count" in m.model_fields_set


def test_assigned_model_is_not_copied() -> None:
    s = Store()
    m = Plan(store=s)
    item = Item(name="a")
    m.nested = item
    item.done = True
    assert m.nested is item
    assert s.get("Plan:nested") == Item(name="a", done=True)


def test_invalid_assignment_raises_and_leaves_the_store_unchanged() -> None:
    s = Store()
    m = Plan(store=s)
    m.count = 4
    before = dict(s.items())
    with pytest.raises(ValidationError, match="count"):
        m.count = "many"  # type: ignore[assignment]
    with pytest.raises(ValidationError, match="pet"):
        m.pet = {"kind": "fish"}  # type: ignore[assignment]
    assert dict(s.items()) == before
    assert m.count == 4


def test_assignment_validates_the_whole_state_in_the_store() -> None:
    s = Store()
    r = Range(store=s)
    with pytest.raises(ValidationError, match="lo=20 > hi=10"):
        r.lo = 20
    assert s.get("Range:lo") == 0
    s.set("Range:hi", 3)  # behind the model's back
    with pytest.raises(ValidationError, match="lo=5 > hi=3"):
        r.lo = 5
    r.hi = 30
    r.lo = 20
    assert (s.get("Range:lo"), s.get("Range:hi")) == (20, 30)


def test_non_json_assignment_is_refused_and_the_store_is_unchanged() -> None:
    s = Store()
    m = Loose(store=s)
    with pytest.raises(TypeError, match="'Loose:blob'"):
        m.blob = object()
    assert s.get("Loose:blob") is None


@pytest.mark.parametrize("field", ["store", "instance"])
def test_store_and_instance_cannot_be_reassigned(field: str) -> None:
    s = Store()
    m = Plan(store=s, instance="a")
    with pytest.raises(ValidationError, match="frozen"):
        setattr(m, field, Store() if field == "store" else "b")
    assert m.store is s
    assert m.instance == "a"


@pytest.mark.parametrize("cls", [Frozen, FrozenField])
def test_frozen_fields_are_refused(cls: type[Frozen | FrozenField]) -> None:
    s = Store()
    m = cls(store=s)
    with pytest.raises(ValidationError, match="frozen"):
        m.n = 1  # type: ignore[misc]
    assert s.get(f"{cls.__name__}:n") == 0


def test_deleted_key_falls_back_to_the_last_value_seen() -> None:
    s = Store()
    m = Plan(store=s)
    m.count = 4
    s.delete("Plan:count")
    assert m.count == 4


# --- dumps --------------------------------------------------------------------------------


def test_model_dump_reflects_changes_made_behind_the_model() -> None:
    s = Store()
    m = Plan(store=s)
    s.set("Plan:count", 42)
    s.set("Plan:items", [{"name": "z"}])
    dumped = m.model_dump()
    assert dumped["count"] == 42
    assert dumped["items"] == [{"name": "z", "done": False}]
    assert "store" not in dumped
    assert "instance" not in dumped
    assert json.loads(m.model_dump_json())["count"] == 42
    assert m.model_dump(include={"count"}) == {"count": 42}


def test_model_dump_of_invalid_store_state_raises() -> None:
    s = Store()
    m = Plan(store=s)
    s.set("Plan:count", "many")
    with pytest.raises(ValidationError, match="count"):
        m.model_dump()
    with pytest.raises(ValidationError, match="count"):
        m.model_dump_json()


def test_repr_reads_the_store_and_hides_it() -> None:
    s = Store()
    m = Plan(store=s, instance="a")
    s.set("Plan:a:count", 9)
    text = repr(m)
    assert "count=9" in text
    assert "instance='a'" in text
    assert "store=" not in text


# --- nesting --------------------------------------------------------------------------------


def test_store_model_default_is_refused(current: Store) -> None:
    with pytest.raises(TypeError, match=r"HoldsInnerByDefault\.inner .*derive from BaseModel"):
        HoldsInnerByDefault(store=Store())


def test_store_model_argument_is_refused_and_nothing_is_written() -> None:
    s = Store()
    inner = Inner(store=Store())
    with pytest.raises(TypeError, match="derive from BaseModel"):
        MayHoldInner(store=s, inner=inner)
    with pytest.raises(TypeError, match="derive from BaseModel"):
        MayHoldInner(store=s, inners=[inner])
    assert list(s.keys()) == []


def test_store_model_assignment_is_refused() -> None:
    s = Store()
    m = MayHoldInner(store=s)
    inner = Inner(store=Store())
    with pytest.raises(TypeError, match=r"MayHoldInner\.inner .*derive from BaseModel"):
        m.inner = inner
    with pytest.raises(TypeError, match="derive from BaseModel"):
        m.inners = [inner]
    assert s.get("MayHoldInner:inner") is None
    assert s.get("MayHoldInner:inners") == []


# --- sharing and isolation ------------------------------------------------------------------


def test_instances_are_isolated() -> None:
    s = Store()
    a = Plan(store=s, instance="a")
    b = Plan(store=s, instance="b")
    plain = Plan(store=s)
    a.count = 1
    b.count = 2
    assert (a.count, b.count, plain.count) == (1, 2, 0)
    assert s.get("Plan:a:count") == 1
    assert s.get("Plan:b:count") == 2
    assert s.get("Plan:count") == 0


def test_objects_over_one_store_and_instance_share_state() -> None:
    s = Store()
    one = Plan(store=s, instance="x")
    two = Plan(store=s, instance="x")
    one.count = 5
    assert two.count == 5
    two.tags.append("t")
    assert one.tags == ["t"]
    assert one.tags is two.tags


def test_subclass_uses_its_own_name() -> None:
    s = Store()
    d = Derived(store=s)
    d.count = 7
    assert s.get("Derived:count") == 7
    assert s.get("Derived:extra") == 1
    assert Plan(store=s).count == 0
    assert s.get("Plan:count") == 0


# --- store_as -----------------------------------------------------------------------------


def test_store_as_uses_the_current_store(current: Store) -> None:
    m = store_as(Plan)
    assert m.store is current
    m.count = 3
    assert current.get("Plan:count") == 3
    named = store_as(Plan, instance="n")
    assert named.instance == "n"
    assert current.get("Plan:n:count") == 0
    assert Plan().store is current


def test_store_as_returns_shared_views(current: Store) -> None:
    store_as(Plan).items.append(Item(name="a"))
    assert store_as(Plan).items == [Item(name="a")]


# --- store_from_events_as -----------------------------------------------------------------


def _recorded() -> list[StoreEvent]:
    def add(key: str, value: Any) -> JsonChange:
        return JsonChange(op="add", path=f"/{key}", value=value)

    return [
        StoreEvent(
            changes=[
                add("Plan:count", 3),
                add("Plan:items", [{"name": "a"}]),
                add("Plan:instance", None),
                add("Plan:x:count", 7),
                add("Plan:x:when", "2024-05-01T12:00:00Z"),
                add("Other:count", 1),
            ]
        ),
        StoreEvent(
            changes=[
                JsonChange(op="replace", path="/Plan:count", value=4, replaced=3),
                add("Plan:x:instance", "x"),
            ]
        ),
    ]


def test_store_from_events_as_rebuilds_the_unnamed_instance(current: Store) -> None:
    m = store_from_events_as(_recorded(), Plan)
    assert m.count == 4
    assert m.items == [Item(name="a")]
    assert m.instance is None
    assert m.store is not current
    assert set(m.store.keys()) == {f"Plan:{name}" for name in PLAN_FIELDS}
    assert list(current.keys()) == []


def test_store_from_events_as_rebuilds_a_named_instance() -> None:
    m = store_from_events_as(_recorded(), Plan, instance="x")
    assert m.count == 7
    assert m.when == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert m.items == []
    assert m.instance == "x"
    assert m.store.get("Plan:x:count") == 7


def test_store_from_events_as_reads_a_saved_transcript() -> None:
    saved = Transcript.from_json(Transcript(_recorded()).to_json())
    assert store_from_events_as(saved.events, Plan).model_dump()["count"] == 4


def test_store_from_events_as_validates() -> None:
    events = [StoreEvent(changes=[JsonChange(op="add", path="/Plan:count", value="many")])]
    with pytest.raises(ValidationError, match="count"):
        store_from_events_as(events, Plan)


@pytest.mark.parametrize("cls", [Aliased, AliasedByName])
def test_store_from_events_as_handles_aliases(cls: type[Aliased | AliasedByName]) -> None:
    events = [StoreEvent(changes=[JsonChange(op="add", path=f"/{cls.__name__}:n", value=3)])]
    assert store_from_events_as(events, cls).n == 3
