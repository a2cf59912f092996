"""Per-sample state: :class:`Store` and :func:`store`.

A store is a flat mapping from string keys to JSON-serialisable values.
"JSON-serialisable" is checked when a value goes in, so that a bad value is
reported at the line that stored it (naming the key and the type) instead of
turning into ``null`` in the transcript later. What counts is what pydantic
can serialise: JSON's own types, plus dataclasses, pydantic models, tuples,
sets, ``bytes`` and dates; strictly (no NaN or infinity, no lone surrogate,
no cycle), so that what goes in can be written to the sample log and read
back the same.
"""

from __future__ import annotations

import json
import math
from contextvars import ContextVar
from copy import deepcopy
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, overload

from pydantic_core import PydanticSerializationError, to_json

from ._changes import IMMUTABLE, ChangeTracker

if TYPE_CHECKING:
    from collections.abc import ItemsView, KeysView, ValuesView

__all__ = ["Store", "check_jsonable", "store"]

VT = TypeVar("VT")


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")


def check_jsonable(key: str, value: object) -> None:
    """Raise :class:`TypeError` naming *key* unless *value* serialises to strict JSON.

    Strict: NaN and the infinities (which JSON has no number for, and which
    would come back as ``null``), strings with lone surrogates (which UTF-8
    cannot encode, so the sample log could not be written) and cyclic values
    are refused, here rather than when the log is written.
    """
    try:
        if isinstance(value, float):
            if not math.isfinite(value):
                _refuse_constant(repr(value))
        elif isinstance(value, str):
            value.encode("utf-8")
        elif not (value is None or isinstance(value, int)):
            data = to_json(value)
            if b"NaN" in data or b"Infinity" in data:  # in a string, or a constant: look closer
                json.loads(data, parse_constant=_refuse_constant)
    except (PydanticSerializationError, ValueError) as exc:  # UnicodeEncodeError is one
        reason = "circular reference" if "Circular reference" in str(exc) else str(exc)
        raise TypeError(
            f"store value for key {key!r} is not JSON-serialisable "
            f"({type(value).__name__}): {reason}"
        ) from None


class Store:
    """A sample's key-value state.

    Args:
        data: Initial contents; deep-copied, so the store never shares
            objects with the caller's dict.

    Raises:
        TypeError: A key is not a ``str``, or a value is not JSON-serialisable.
    """

    __slots__ = ("__weakref__", "_changes", "_data")

    def __init__(self, data: dict[str, Any] | None = None) -> None:
        if data is not None and not isinstance(data, dict):
            raise TypeError(f"data must be a dict or None, got {type(data).__name__}")
        # Each key is copied on its own, so no two keys share a mutable object.
        contents = {key: deepcopy(value) for key, value in data.items()} if data else {}
        for key, value in contents.items():
            _check_key(key)
            check_jsonable(key, value)
        self._data: dict[str, Any] = contents
        #: What changed since the last snapshot (see _changes.py and _snapshot.py).
        self._changes = ChangeTracker()

    def __repr__(self) -> str:
        return f"Store({self._data!r})"

    @overload
    def get(self, key: str, default: None = None) -> Any: ...
    @overload
    def get(self, key: str, default: VT) -> VT: ...
    def get(self, key: str, default: object = None) -> Any:
        """Return the value of *key*, or *default*.

        A missing key with a non-``None`` default stores *default* itself
        (not a copy) and returns it, so ``store().get("seen", []).append(x)``
        persists, as in ``inspect_ai``.

        Raises:
            TypeError: *default* is stored and is not JSON-serialisable.
        """
        data = self._data
        if default is not None and key not in data:
            _check_key(key)
            check_jsonable(key, default)
            data[key] = default
            self._changes.touched(key)
            value: Any = default
        else:
            value = data.get(key, default)
        if type(value) not in IMMUTABLE:  # (an int, say, cannot be changed in place)
            self._changes.handed_out(key)
        return value

    def set(self, key: str, value: Any) -> None:
        """Set *key* to *value* (stored as is, not copied).

        Raises:
            TypeError: *key* is not a ``str`` or *value* is not JSON-serialisable;
                the store is unchanged.
        """
        _check_key(key)
        check_jsonable(key, value)
        self._data[key] = value
        self._changes.stored(key, value)

    def delete(self, key: str) -> None:
        """Remove *key*.

        Raises:
            KeyError: *key* is not in the store (the message names it).
        """
        try:
            del self._data[key]
        except KeyError:
            raise KeyError(key) from None
        self._changes.deleted(key)

    def keys(self) -> KeysView[str]:
        """A live view of the keys."""
        return self._data.keys()

    def values(self) -> ValuesView[Any]:
        """A live view of the values."""
        self._expose_all()
        return self._data.values()

    def items(self) -> ItemsView[str, Any]:
        """A live view of the items."""
        self._expose_all()
        return self._data.items()

    def _expose_all(self) -> None:
        self._changes.all_handed_out(self._data.items())

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Store):
            return self._data == other._data
        if isinstance(other, dict):
            return self._data == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


def _check_key(key: object) -> None:
    if not isinstance(key, str):
        raise TypeError(f"store keys must be str, got {type(key).__name__}: {key!r}")


#: The store outside any sample: one per process, as in inspect_ai.
_default_store = Store()
current_store: ContextVar[Store] = ContextVar("corral.store", default=_default_store)


def store() -> Store:
    """Return the running sample's store (the process-wide store outside any sample).

    This is not a checkpoint.
    """
    return current_store.get()
