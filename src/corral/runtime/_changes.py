"""Recording store changes as RFC 6902 JSON Patch operations.

A span compares a snapshot of the store's JSON taken when it begins with one
taken when it ends. Snapshots are exact, so in-place mutation of nested
values is caught, but taking one does not re-serialise the whole store:

* A :class:`Snapshot` holds the store as a JSON tree plus, when the store's
  values are all of marshal-able builtin types, the ``marshal`` bytes of the
  live data. ``marshal`` runs in C and encodes types exactly (``1``, ``1.0``
  and ``True`` differ), so equal bytes mean an unchanged store.
* Otherwise each key is compared with the previous tree (a C-level ``==``)
  and only the keys that differ are converted to JSON again; the unchanged
  keys share the previous tree's objects. A final ``marshal`` comparison
  catches what ``==`` cannot see (``1`` becoming ``True``), key by key.

Trees are never mutated once built, so snapshots can be shared by nested
spans and kept by them for as long as they need.
"""

from __future__ import annotations

import copy
import marshal
from typing import TYPE_CHECKING, Any

import jsonpatch
import jsonpointer
from pydantic_core import PydanticSerializationError, to_jsonable_python

from ._events import Event, JsonChange, SpanBeginEvent, StoreEvent
from ._store import Store

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["Snapshot", "diff", "snapshot", "store_from_events"]

_MISSING: Any = object()


class Snapshot:
    """An immutable JSON image of a store at one moment."""

    __slots__ = ("blob", "tree")

    def __init__(self, tree: dict[str, Any], blob: bytes | None) -> None:
        self.tree = tree
        self.blob = blob


def _jsonable(key: str, value: object) -> Any:
    try:
        return to_jsonable_python(value)
    except PydanticSerializationError as exc:
        raise TypeError(
            f"store value for key {key!r} is no longer JSON-serialisable "
            f"({type(value).__name__}): {exc}"
        ) from None


def _marshal(value: Any) -> bytes | None:
    try:
        return marshal.dumps(value)
    except ValueError:
        return None


def snapshot(store: Store) -> Snapshot:
    """Return an exact snapshot of *store*, reusing the previous one where possible.

    Raises:
        TypeError: A value was changed in place into something that is not
            JSON-serialisable; the message names the key.
    """
    data = store._data
    previous = store._snapshot
    blob = _marshal(data)
    if not isinstance(previous, Snapshot):
        current = Snapshot({k: _jsonable(k, v) for k, v in data.items()}, blob)
        store._snapshot = current
        return current
    if blob is not None and blob == previous.blob:
        return previous

    old = previous.tree
    tree: dict[str, Any] = {}
    fresh: set[str] = set()
    for key, value in data.items():
        before = old.get(key, _MISSING)
        if before is _MISSING or type(value) is not type(before) or value != before:
            tree[key] = _jsonable(key, value)
            fresh.add(key)
        else:
            tree[key] = before
    if blob is None or _marshal(tree) != blob:
        # Some value is not a plain JSON type (a tuple, a model), or ``==``
        # hid a change of type (1 -> True). Settle it key by key.
        for key, value in data.items():
            if key not in fresh and _marshal(value) != _marshal(tree[key]):
                tree[key] = _jsonable(key, value)
    current = Snapshot(tree, blob)
    store._snapshot = current
    return current


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _strictly_equal(a: Any, b: Any) -> bool:
    return a == b and marshal.dumps(a) == marshal.dumps(b)


def diff(before: Snapshot, after: Snapshot) -> list[JsonChange]:
    """Return the JSON Patch that turns *before* into *after*.

    Operations are grouped by top-level key; ``replace`` operations carry the
    value they replaced.
    """
    if before is after:
        return []
    old, new = before.tree, after.tree
    changes: list[JsonChange] = []
    for key in old:
        if key not in new:
            changes.append(JsonChange(op="remove", path=f"/{_escape(key)}"))
    for key, value in new.items():
        previous = old.get(key, _MISSING)
        if previous is value:
            continue
        prefix = f"/{_escape(key)}"
        if previous is _MISSING:
            changes.append(JsonChange(op="add", path=prefix, value=value))
        elif isinstance(previous, (dict, list)) and type(previous) is type(value):
            changes.extend(_nested_changes(prefix, previous, value))
        elif not _strictly_equal(previous, value):
            changes.append(JsonChange(op="replace", path=prefix, value=value, replaced=previous))
    return changes


def _nested_changes(prefix: str, old: Any, new: Any) -> list[JsonChange]:
    ops = jsonpatch.make_patch(old, new).patch
    if not ops:
        if _strictly_equal(old, new):
            return []
        # Only a type changed deep inside (1 -> True): replace the whole value.
        return [JsonChange(op="replace", path=prefix, value=new, replaced=old)]
    # Replay the operations on a copy of the old value, so that each
    # ``replace`` records what it replaced even after earlier operations
    # shifted array indices.
    work = copy.deepcopy(old)
    changes: list[JsonChange] = []
    for op in ops:
        replaced = None
        if op["op"] == "replace":
            replaced = copy.deepcopy(jsonpointer.resolve_pointer(work, op["path"]))
        work = jsonpatch.apply_patch(work, [op], in_place=True)
        changes.append(
            JsonChange(
                op=op["op"],
                path=prefix + op["path"],
                from_=prefix + op["from"] if "from" in op else None,
                value=op.get("value"),
                replaced=replaced,
            )
        )
    return changes


def _patch_op(change: JsonChange) -> dict[str, Any]:
    op: dict[str, Any] = {"op": change.op, "path": change.path}
    if change.op in ("add", "replace", "test"):
        op["value"] = change.value
    elif change.op in ("move", "copy"):
        if change.from_ is None:
            raise ValueError(f"JsonChange operation {change.op!r} requires 'from' field")
        op["from"] = change.from_
    return op


def store_from_events(events: Iterable[Event]) -> Store:
    """Rebuild a store from the :class:`StoreEvent` s of a transcript.

    Only root-level changes are applied: store events recorded outside any
    span, and those recorded directly in a root span (a span without a
    parent). A nested span's changes are already contained in its root
    span's event, as in ``inspect_ai``.

    Raises:
        ValueError: A ``move`` or ``copy`` change has no ``from``.
    """
    events = list(events)
    roots = {e.id for e in events if isinstance(e, SpanBeginEvent) and e.parent_id is None}
    data: dict[str, Any] = {}
    for event in events:
        if isinstance(event, StoreEvent) and (event.span_id is None or event.span_id in roots):
            ops = [_patch_op(change) for change in event.changes]
            data = jsonpatch.apply_patch(data, ops, in_place=True)
    rebuilt = Store()
    rebuilt._data = data
    return rebuilt
