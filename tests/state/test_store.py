"""Store and store()."""

from __future__ import annotations

import dataclasses
from datetime import date

import pydantic
import pytest

from corral.util import Store, store


def test_constructor_deep_copies() -> None:
    data = {"a": {"b": [1]}}
    s = Store(data)
    data["a"]["b"].append(2)
    assert s.get("a") == {"b": [1]}


def test_get_with_default_stores_the_default_object_itself() -> None:
    s = Store()
    colors = s.get("colors", [])
    colors.append("red")
    assert s.get("colors") == ["red"]
    assert s.get("colors") is colors


@pytest.mark.parametrize("default", [0, "", [], False])
def test_falsy_defaults_are_stored_too(default: object) -> None:
    s = Store()
    assert s.get("k", default) == default
    assert "k" in s


def test_get_without_default_stores_nothing() -> None:
    s = Store()
    assert s.get("missing") is None
    assert "missing" not in s


def test_a_present_none_is_returned() -> None:
    s = Store({"k": None})
    assert s.get("k", 5) is None


def test_set_get_delete_and_views() -> None:
    s = Store()
    s.set("a", 1)
    s.set("b", {"x": [1, 2]})
    keys = s.keys()
    assert list(keys) == ["a", "b"]
    s.set("c", 3)
    assert list(keys) == ["a", "b", "c"]  # live views
    assert list(s.values()) == [1, {"x": [1, 2]}, 3]
    assert dict(s.items()) == {"a": 1, "b": {"x": [1, 2]}, "c": 3}
    s.delete("a")
    assert "a" not in s
    assert s == {"b": {"x": [1, 2]}, "c": 3}
    assert s == Store({"b": {"x": [1, 2]}, "c": 3})


def test_delete_missing_key_names_it() -> None:
    with pytest.raises(KeyError, match="'nope'"):
        Store().delete("nope")


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Model(pydantic.BaseModel):
    name: str


@pytest.mark.parametrize(
    "value", [Point(1, 2), Model(name="m"), (1, 2), {1, 2}, b"bytes", date(2026, 1, 1), None]
)
def test_serialisable_values_are_accepted(value: object) -> None:
    s = Store()
    s.set("k", value)
    assert s.get("k") is value


class Opaque:
    pass


def test_unserialisable_value_is_refused_naming_key_and_type() -> None:
    s = Store({"keep": 1})
    with pytest.raises(TypeError, match=r"key 'bad' is not JSON-serialisable \(Opaque\)"):
        s.set("bad", Opaque())
    assert s == {"keep": 1}
    with pytest.raises(TypeError, match="key 'nested'"):
        s.set("nested", {"deep": [Opaque()]})
    with pytest.raises(TypeError, match="key 'dflt'"):
        s.get("dflt", Opaque())
    assert s == {"keep": 1}


def test_constructor_refuses_bad_data() -> None:
    with pytest.raises(TypeError, match="key 'x'"):
        Store({"x": Opaque()})
    with pytest.raises(TypeError, match="data must be a dict"):
        Store([("a", 1)])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="store keys must be str"):
        Store({1: "a"})  # type: ignore[dict-item]


def test_non_str_keys_are_refused() -> None:
    with pytest.raises(TypeError, match="store keys must be str"):
        Store().set(3, "x")  # type: ignore[arg-type]


def test_store_outside_a_sample_is_process_wide() -> None:
    assert store() is store()
    assert isinstance(store(), Store)


def test_store_is_unhashable_like_a_dict() -> None:
    with pytest.raises(TypeError):
        hash(Store())


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (float("nan"), "nan is not a JSON number"),
        ({"x": [float("inf")]}, "Infinity is not a JSON number"),
        (-float("inf"), "-inf is not a JSON number"),
        ("\ud800", "surrogates not allowed"),
        (["ok", "\udfff"], "surrogates not allowed"),
    ],
)
def test_values_strict_json_cannot_hold_are_refused_by_key(value: object, reason: str) -> None:
    s = Store({"k": 1})
    with pytest.raises(TypeError, match=rf"key 'bad' is not JSON-serialisable .*{reason}"):
        s.set("bad", value)
    assert dict(s.items()) == {"k": 1}


def test_a_cyclic_value_is_a_type_error_naming_the_key() -> None:
    cycle: list[object] = []
    cycle.append(cycle)
    with pytest.raises(TypeError, match=r"key 'loop' is not JSON-serialisable \(list\): circular"):
        Store().set("loop", cycle)


def test_strings_that_look_like_constants_are_fine() -> None:
    s = Store()
    s.set("a", "NaN")
    s.set("b", {"Infinity": ["NaN", 1.5]})
    assert (s.get("a"), s.get("b")) == ("NaN", {"Infinity": ["NaN", 1.5]})
