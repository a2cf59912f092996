"""Snapshots of a store, and the RFC 6902 JSON Patch between two of them.

A span compares a snapshot of the store's JSON taken when it begins with one
taken when it ends. Snapshots are deep images, so in-place mutation of nested
values is caught, but taking one costs in proportion to the keys that may
have changed, not to the size of the store:

* The store's :class:`~corral._state._changes.ChangeTracker` notes the keys
  set or deleted since its last snapshot, and the keys whose mutable value it
  has handed out (``get``, ``set``, ``values``, ``items``): only those values
  can differ from their last image. Values that were never handed out cannot
  have changed and are not looked at.
* Each candidate's live value is compared with its last image, strictly:
  types as well as values, at every level, so ``1`` replaced by ``True`` or
  ``1.0`` inside a list is a change, as it is in the JSON. ``==`` is tried
  first, then the JSON text (pydantic-core's ``to_json``, whose text tells
  the types apart; an image's text is made once and shared). The exposed
  keys, as many as the sample ever read, are compared in bulk, a C call
  for all of them; a Python walk of the values (:func:`same_json`) costs
  several times more. Only the values that differ are converted to JSON
  again, and the new tree shares every other image with the previous one.
  A store in which nothing changed gives back the previous snapshot itself.
* A snapshot remembers which keys changed since the one it was derived from
  (held weakly), so a diff visits only those keys when the chain between two
  snapshots is still alive, and every key otherwise.

Trees are never mutated once built, so snapshots can be shared by nested
spans and kept by them for as long as they need. jsonpatch is imported on
the first diff of two lists.
"""

from __future__ import annotations

import copy
import itertools
import operator
import weakref
from typing import TYPE_CHECKING, Any

from pydantic_core import PydanticSerializationError, to_json, to_jsonable_python

from ._events import Event, JsonChange, SpanBeginEvent, StoreEvent
from ._store import Store

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["Snapshot", "diff", "snapshot", "store_from_events"]

_MISSING: Any = object()


class Snapshot:
    """An immutable JSON image of a store at one moment."""

    __slots__ = ("__weakref__", "changed", "encoded", "parent", "tree")

    def __init__(
        self,
        tree: dict[str, Any],
        parent: Snapshot | None = None,
        changed: tuple[str, ...] = (),
    ) -> None:
        self.tree = tree
        self.parent = weakref.ref(parent) if parent is not None else None
        self.changed = changed
        #: The JSON text of container images, made when first needed (see :func:`snapshot`).
        self.encoded: dict[str, bytes] = {}
        if parent is not None and parent.encoded:
            self.encoded = dict(parent.encoded)
            for key in changed:
                self.encoded.pop(key, None)


def _jsonable(key: str, value: object) -> Any:
    try:
        return to_jsonable_python(value)
    except PydanticSerializationError as exc:
        raise TypeError(
            f"store value for key {key!r} is no longer JSON-serialisable "
            f"({type(value).__name__}): {exc}"
        ) from None


def snapshot(store: Store) -> Snapshot:
    """Return a snapshot of *store* now, reusing the previous one where possible.

    Raises:
        TypeError: A value was changed in place into something that is not
            JSON-serialisable; the message names the key.
    """
    data = store._data
    changes = store._changes
    previous = changes.snapshot
    if not isinstance(previous, Snapshot):
        current = Snapshot({k: _jsonable(k, v) for k, v in data.items()})
        changes.taken(current)
        return current

    old = previous.tree
    encoded = previous.encoded
    changed = [key for key in changes.pending if _differs(key, data, old, encoded)]
    exposed = changes.exposed_only()
    if exposed:
        changed += _changed_in_place(exposed, data, old, encoded)
    if not changed:
        changes.taken(previous)
        return previous
    tree = dict(old)
    for key in changed:
        if key in data:
            tree[key] = _jsonable(key, data[key])  # may raise: then nothing is forgotten
        else:
            del tree[key]
    current = Snapshot(tree, previous, tuple(changed))
    changes.taken(current)
    return current


def _image_text(key: str, image: Any, encoded: dict[str, bytes]) -> bytes:
    """The JSON text of *image*, the snapshot's value of *key*: made once, then shared."""
    text = encoded.get(key)
    if text is None:
        text = encoded[key] = to_json(image)
    return text


def _differs(
    key: str, data: dict[str, Any], old: dict[str, Any], encoded: dict[str, bytes]
) -> bool:
    """Whether the live value of *key* is no longer the JSON of its image in *old*."""
    before = old.get(key, _MISSING)
    value = data.get(key, _MISSING)
    if value is _MISSING or before is _MISSING:
        return value is not before
    kind = type(value)
    if kind is not type(before) or value != before:
        return True
    if kind is dict or kind is list:
        # Equal by ==, which says [1] == [True] == [1.0]: compare the JSON text,
        # which tells the types apart.
        try:
            return to_json(value) != _image_text(key, before, encoded)
        except PydanticSerializationError:  # changed into something that is not JSON
            return True
    return False


def _changed_in_place(
    keys: list[str], data: dict[str, Any], old: dict[str, Any], encoded: dict[str, bytes]
) -> list[str]:
    """Which of *keys*, neither set nor deleted since *old*, were changed in place.

    Their values have been handed out, so any may have changed. There are
    as many as the sample ever read, so they are compared in bulk: ``==``
    of all the live values with their images, then, for the equal ones, the
    JSON text of all of them with the images' texts joined, each one C call.
    Only when a bulk comparison fails are they looked at one by one.
    """
    try:
        live = [data[key] for key in keys]
        images = [old[key] for key in keys]
    except KeyError:  # not expected: exposed keys are in the store and in its snapshot
        return [key for key in keys if _differs(key, data, old, encoded)]
    changed: list[str] = []
    if live != images:
        equal = list(map(operator.eq, live, images))
        changed = list(itertools.compress(keys, map(operator.not_, equal)))
        keys = list(itertools.compress(keys, equal))
        live = list(itertools.compress(live, equal))
        images = list(itertools.compress(images, equal))
    if keys:
        try:
            texts = list(map(encoded.__getitem__, keys))
        except KeyError:
            texts = [
                _image_text(key, image, encoded) for key, image in zip(keys, images, strict=True)
            ]
        try:
            same = to_json(live) == b"[" + b",".join(texts) + b"]"
        except PydanticSerializationError:  # one of them is no longer JSON
            same = False
        if not same:
            changed += [key for key in keys if _differs(key, data, old, encoded)]
    return changed


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _changed_keys(before: Snapshot, after: Snapshot) -> Iterable[str] | None:
    """Keys changed between *before* and its descendant *after*; ``None`` if unknown."""
    keys: dict[str, None] = {}
    node = after
    while node is not before:
        keys.update(dict.fromkeys(node.changed))
        parent = node.parent() if node.parent is not None else None
        if parent is None:
            return None
        node = parent
    return keys


def diff(before: Snapshot, after: Snapshot) -> list[JsonChange]:
    """Return the JSON Patch that turns *before* into *after*.

    Operations are grouped by top-level key; ``replace`` operations carry the
    value they replaced.
    """
    if before is after:
        return []
    old, new = before.tree, after.tree
    keys = _changed_keys(before, after)
    if keys is None:
        keys = [*new, *(key for key in old if key not in new)]
    changes: list[JsonChange] = []
    for key in keys:
        previous = old.get(key, _MISSING)
        value = new.get(key, _MISSING)
        if previous is value:
            continue
        path = f"/{_escape(key)}"
        if value is _MISSING:
            changes.append(JsonChange(op="remove", path=path))
        elif previous is _MISSING:
            changes.append(JsonChange(op="add", path=path, value=value))
        else:
            _diff_values(path, previous, value, changes)
    return changes


def _diff_values(path: str, old: Any, new: Any, out: list[JsonChange]) -> None:
    """Append the operations turning *old* into *new* (both JSON) at *path*."""
    if type(old) is dict and type(new) is dict:
        for key in old:
            if key not in new:
                out.append(JsonChange(op="remove", path=f"{path}/{_escape(key)}"))
        for key, value in new.items():
            before = old.get(key, _MISSING)
            if before is value:
                continue
            if before is _MISSING:
                out.append(JsonChange(op="add", path=f"{path}/{_escape(key)}", value=value))
            else:
                _diff_values(f"{path}/{_escape(key)}", before, value, out)
    elif type(old) is list and type(new) is list:
        if not same_json(old, new):
            out.extend(_list_changes(path, old, new))
    elif type(old) is not type(new) or old != new:
        out.append(JsonChange(op="replace", path=path, value=new, replaced=old))


def same_json(a: Any, b: Any) -> bool:
    """Whether *a* and *b* are the same JSON: equal, with the same types at every level.

    ``==`` alone says ``[1] == [True] == [1.0]``; JSON (and the transcript)
    tells them apart. A live value that is not plain JSON (a tuple, a model)
    is never the same as its image, so it is converted again.
    """
    if a is b:
        return True
    kind = type(a)
    if kind is not type(b):
        return False
    if kind is dict:
        if len(a) != len(b):
            return False
        for key, value in a.items():
            other = b.get(key, _MISSING)
            if other is _MISSING or not same_json(value, other):
                return False
        return True
    if kind is list:
        return len(a) == len(b) and all(map(same_json, a, b))
    return bool(a == b)


def _list_changes(prefix: str, old: list[Any], new: list[Any]) -> list[JsonChange]:
    """Diff two lists with jsonpatch, which finds insertions and removals.

    jsonpatch compares with ``==``, so it may miss a change of type alone
    (``1`` -> ``True``): when its operations do not give *new* exactly, the
    whole list is replaced instead.
    """
    import jsonpatch
    import jsonpointer

    ops = jsonpatch.make_patch(old, new).patch
    # Replay the operations on a copy of the old list, so that each
    # ``replace`` records what it replaced even after earlier operations
    # shifted the indices.
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
    if not same_json(work, new):
        return [JsonChange(op="replace", path=prefix, value=new, replaced=old)]
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
    span, and those recorded directly in a root span (a span whose parent is
    not among *events*). A nested span's changes are already contained in its root
    span's event, as in ``inspect_ai``.

    Raises:
        ValueError: A ``move`` or ``copy`` change has no ``from``.
    """
    import jsonpatch

    events = list(events)
    spans = {e.id: e.parent_id for e in events if isinstance(e, SpanBeginEvent)}
    # A span whose parent is not among these events (the events are part of
    # a larger transcript) counts as a root, and so does an event whose span
    # is not among them.
    roots = {id for id, parent in spans.items() if parent is None or parent not in spans}
    data: dict[str, Any] = {}
    for event in events:
        if isinstance(event, StoreEvent) and (
            event.span_id is None or event.span_id not in spans or event.span_id in roots
        ):
            ops = [_patch_op(change) for change in event.changes]
            data = jsonpatch.apply_patch(data, ops, in_place=True)
    rebuilt = Store()
    rebuilt._data = data
    return rebuilt
