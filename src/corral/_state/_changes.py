"""The bookkeeping behind change recording: what a store did since its last snapshot.

A :class:`~corral._state._store.Store` tells its :class:`ChangeTracker` about
every key it sets or deletes, and about every key whose mutable value it hands
out (``get``, ``set``, ``values``, ``items``): only those values can differ
from their image in the last snapshot. :mod:`._snapshot` reads the tracker to
take the next snapshot cheaply and tells it when one was taken. The store
never looks inside; the snapshot code never touches the store's own fields.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["IMMUTABLE", "ChangeTracker"]

#: Types whose values cannot change in place: handing one out exposes nothing.
IMMUTABLE = frozenset({str, int, float, bool, type(None), bytes})


class ChangeTracker:
    """The keys of one store that may have changed since its last snapshot.

    Attributes:
        snapshot: The last snapshot taken (a ``Snapshot``), or ``None``.
        pending: Keys set or deleted since then.
        exposed: Keys whose mutable value has been handed out and may be
            changed in place at any time (they stay candidates until deleted).
    """

    __slots__ = ("exposed", "pending", "snapshot")

    def __init__(self) -> None:
        self.snapshot: object = None
        self.pending: dict[str, None] = {}
        self.exposed: dict[str, None] = {}

    def touched(self, key: str) -> None:
        """*key* was set or deleted."""
        self.pending[key] = None

    def stored(self, key: str, value: object) -> None:
        """*key* was set to *value*, which the caller still holds."""
        self.pending[key] = None
        if type(value) not in IMMUTABLE:
            self.exposed[key] = None

    def handed_out(self, key: str) -> None:
        """The value of *key*, a mutable one, was handed to the caller, who may change it."""
        self.exposed[key] = None

    def all_handed_out(self, items: Iterable[tuple[str, object]]) -> None:
        """The values of *items* were handed to the caller: the mutable ones are exposed."""
        exposed = self.exposed
        for key, value in items:
            if type(value) not in IMMUTABLE:
                exposed[key] = None

    def deleted(self, key: str) -> None:
        """*key* was deleted: it changed, and nothing of it is exposed any more."""
        self.pending[key] = None
        self.exposed.pop(key, None)

    def exposed_only(self) -> list[str]:
        """The exposed keys that are not pending: changed, if at all, in place."""
        pending = self.pending
        return [key for key in self.exposed if key not in pending]

    def taken(self, snapshot: object) -> None:
        """A snapshot was taken: it is the new reference, and nothing is pending."""
        self.snapshot = snapshot
        self.pending = {}
