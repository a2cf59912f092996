"""Capacity limiters and the per-event-loop registry that owns them.

A :class:`Limiter` is a named capacity limiter. Limiters live in a
:class:`LimiterRegistry` that belongs to the running event loop, so two
``trio.run`` calls in one process, or trio followed by asyncio, never share
one. Two kinds of limiter are kept there:

* **named** limiters (``concurrency(name, n, key)``), looked up by key and
  kept for the rest of the event loop's run: the first request for a key
  sets its limit, and a later request with another limit is logged once
  and otherwise ignored (``inspect_ai`` ignores it silently);
* **owned** limiters, which a scope creates on entry with
  :meth:`LimiterRegistry.owned` and which are dropped when it exits (a
  task's ``max_subprocesses``, its ``max_sandboxes``). They are never looked
  up: the scope holds the object, and the registry only lists it, so
  :func:`~corral.util.concurrency_status` shows it while the scope runs.

Every limiter can be resized while it is in use, through its
:class:`ConcurrencyLimit` (what ``async with concurrency(...)`` yields).
Raising the limit admits waiters at once, in the order they came; lowering it
takes no slot back: holders keep theirs, ``in_use`` may exceed the limit
until enough of them leave, and newcomers wait until it no longer does.

The registry is found without anyio's ``RunVar`` (which looks the backend up
on every call): trio's own ``RunVar`` under trio, and a weak mapping keyed by
the running loop under asyncio. ``concurrency()`` sits on hot paths.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import sys
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, final

import anyio
import sniffio

from ._checks import check_limit
from ._public import NoPublicConstructor

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Iterator

__all__ = [
    "ConcurrencyLimit",
    "Limiter",
    "LimiterRegistry",
    "LimiterStatistics",
    "current_registry",
]

logger = logging.getLogger("corral.concurrency")


class _NativeLimiter(Protocol):
    """The part of ``trio.CapacityLimiter`` / ``anyio.CapacityLimiter`` we use."""

    @property
    def total_tokens(self) -> float: ...
    @total_tokens.setter
    def total_tokens(self, value: float) -> None: ...
    @property
    def borrowed_tokens(self) -> int: ...
    async def acquire_on_behalf_of(self, borrower: object) -> None: ...
    def release_on_behalf_of(self, borrower: object) -> None: ...


def _native_limiter(limit: int) -> _NativeLimiter:
    # Under trio, use trio's limiter directly: anyio's wrapper would add a call
    # layer to every acquire. trio is imported only when it is the one running.
    if sniffio.current_async_library() == "trio":
        import trio

        return trio.CapacityLimiter(limit)
    return anyio.CapacityLimiter(limit)


@dataclass(frozen=True, slots=True)
class LimiterStatistics:
    """A snapshot of a :class:`Limiter`.

    Attributes:
        name: The display name.
        key: The registry key of a named limiter; for an owned one, a label
            unique within its registry (``"subprocesses/eval#3"``).
        in_use: Slots currently held.
        limit: Slots in all.
        waiting: Tasks waiting for a slot.
    """

    name: str
    key: str
    in_use: int
    limit: int
    waiting: int


@final
class Limiter:
    """A named capacity limiter owned by one event loop's registry.

    Internal: users see limiters through ``concurrency_status()``,
    ``Task.statistics()`` and the :class:`ConcurrencyLimit` that
    ``concurrency()`` yields (:attr:`handle`).
    """

    __slots__ = ("_native", "_warned", "handle", "key", "name", "requested", "visible")

    def __init__(self, name: str, key: str, limit: int, visible: bool) -> None:
        self.name = name
        self.key = key
        #: The limit the first request asked for; later requests are compared with it.
        self.requested = limit
        self.visible = visible
        self._native = _native_limiter(limit)
        self._warned: set[int] = set()
        self.handle: ConcurrencyLimit = ConcurrencyLimit._create(self)

    def __repr__(self) -> str:
        return (
            f"<corral Limiter {self.name!r} key={self.key!r} "
            f"in_use={self._native.borrowed_tokens}/{self.limit}>"
        )

    @property
    def limit(self) -> int:
        """Slots in all: the live limit.

        Setting it resizes the limiter at once (not a checkpoint): raising it
        wakes as many waiters as there are new free slots, first come first
        served; lowering it takes no slot back from a holder, so
        :attr:`in_use` may exceed it until holders leave.

        Raises:
            TypeError: The new limit is not an ``int`` (``bool`` is refused).
            ValueError: The new limit is less than 1.
        """
        return int(self._native.total_tokens)

    @limit.setter
    def limit(self, value: int) -> None:
        self._native.total_tokens = check_limit("concurrency", value)

    @property
    def in_use(self) -> int:
        """Slots currently held (more than :attr:`limit` while a lowered limit drains)."""
        return self._native.borrowed_tokens

    @property
    def available(self) -> int:
        """Free slots: ``limit - in_use``, and 0 while a lowered limit drains."""
        return max(0, self.limit - self._native.borrowed_tokens)

    async def acquire_on_behalf_of(self, borrower: object) -> None:
        """Take one slot for *borrower*, waiting if none is free.

        This is a checkpoint. If cancelled while waiting, no slot is taken.
        """
        await self._native.acquire_on_behalf_of(borrower)

    def release_on_behalf_of(self, borrower: object) -> None:
        """Give back the slot held by *borrower*."""
        self._native.release_on_behalf_of(borrower)

    def statistics(self) -> LimiterStatistics:
        """Return a frozen snapshot of this limiter's state."""
        stats: Any = getattr(self._native, "statistics", None)
        waiting = stats().tasks_waiting if stats is not None else 0
        return LimiterStatistics(self.name, self.key, self.in_use, self.limit, waiting)


@final
class ConcurrencyLimit(metaclass=NoPublicConstructor):
    """A named limit as ``async with concurrency(...) as limit`` shows it.

    The attributes of ``inspect_ai``'s ``ConcurrencySemaphore``: :attr:`name`,
    :attr:`visible`, :attr:`concurrency` (the limit, which may be set),
    :attr:`value` (free slots) and :attr:`in_use`. Every holder of one key
    gets the same object, and it stays valid after the block: it describes
    the limit, not the holder's slot. Reading or setting an attribute is not
    a checkpoint; set :attr:`concurrency` from the event loop's own thread.
    """

    __slots__ = ("_limiter",)

    def __init__(self, limiter: Limiter) -> None:
        self._limiter = limiter

    def __repr__(self) -> str:
        limiter = self._limiter
        return (
            f"<corral concurrency limit {limiter.name!r}: "
            f"{limiter.in_use} in use of {limiter.limit}>"
        )

    @property
    def name(self) -> str:
        """The display name, as the first request for the key gave it."""
        return self._limiter.name

    @property
    def visible(self) -> bool:
        """Whether ``concurrency_status()`` lists the limit."""
        return self._limiter.visible

    @property
    def concurrency(self) -> int:
        """How many may hold a slot at once; assign to resize the limit live.

        Raising it admits waiters at once, in the order they came. Lowering
        it takes no slot back: holders finish, :attr:`in_use` exceeds the
        limit until enough of them have left, and newcomers wait until then.
        Every holder of the key, now and later, sees the new limit.

        Raises:
            TypeError: The new value is not an ``int`` (``bool`` is refused).
            ValueError: The new value is less than 1.
        """
        return self._limiter.limit

    @concurrency.setter
    def concurrency(self, value: int) -> None:
        self._limiter.limit = value

    @property
    def value(self) -> int:
        """Free slots right now; 0 while a lowered limit drains."""
        return self._limiter.available

    @property
    def in_use(self) -> int:
        """Slots held right now; may exceed :attr:`concurrency` after it was lowered."""
        return self._limiter.in_use


@final
class LimiterRegistry:
    """The limiters of one event loop run: named ones by key, and owned ones."""

    __slots__ = ("_named", "_owned", "_serial")

    def __init__(self) -> None:
        self._named: dict[str, Limiter] = {}
        self._owned: dict[Limiter, None] = {}
        self._serial = itertools.count(1)

    def named(self, name: str, key: str, limit: int, visible: bool = True) -> Limiter:
        """The named limiter *key*, created with *limit* slots on first use.

        A request with another *limit* than the first request's gets the
        existing limiter, and is logged once per key and number. A limit
        resized since is compared with the first request, not with its live
        value: asking again for what created it stays quiet.
        """
        limiter = self._named.get(key)
        if limiter is None:
            limiter = self._named[key] = Limiter(name, key, limit, visible)
        elif limit != limiter.requested and limit not in limiter._warned:
            limiter._warned.add(limit)
            live = limiter.limit
            logger.warning(
                "concurrency limit %r already exists with %d slot(s)%s; the request for "
                "%d slot(s) is ignored (the first limit wins): use another key for a limit "
                "of its own, or set .concurrency on the object `async with concurrency(...)` "
                "yields to resize this one",
                key,
                live,
                "" if live == limiter.requested else f" (created with {limiter.requested})",
                limit,
            )
        return limiter

    @contextlib.contextmanager
    def owned(self, name: str, limit: int) -> Iterator[Limiter]:
        """A new limiter listed under *name* for the block, and dropped when it exits.

        Not a checkpoint. The limiter is the caller's: nothing else can find it.
        """
        limiter = Limiter(name, f"{name}#{next(self._serial)}", limit, visible=True)
        self._owned[limiter] = None
        try:
            yield limiter
        finally:
            self._owned.pop(limiter, None)

    def __iter__(self) -> Iterator[Limiter]:
        return iter([*self._named.values(), *self._owned])

    def __len__(self) -> int:
        return len(self._named) + len(self._owned)


_trio_registry: Any = None  # trio.lowlevel.RunVar[LimiterRegistry], made under trio
_asyncio_registries: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LimiterRegistry] = (
    weakref.WeakKeyDictionary()
)


def current_registry() -> LimiterRegistry:
    """Return the running event loop's registry, creating it on first use.

    Raises:
        RuntimeError: No trio or asyncio event loop is running in this thread.
    """
    global _trio_registry
    # asyncio is looked up, not imported: if it was never imported, no loop of its runs.
    asyncio_module = sys.modules.get("asyncio")
    loop = asyncio_module._get_running_loop() if asyncio_module is not None else None
    if loop is not None:
        registry = _asyncio_registries.get(loop)
        if registry is None:
            registry = _asyncio_registries[loop] = LimiterRegistry()
        return registry
    trio = sys.modules.get("trio")
    if trio is None:
        raise RuntimeError("no trio or asyncio event loop is running in this thread")
    if _trio_registry is None:
        _trio_registry = trio.lowlevel.RunVar("corral.registry")
    try:
        found: LimiterRegistry = _trio_registry.get()
    except LookupError:
        found = LimiterRegistry()
        _trio_registry.set(found)  # raises RuntimeError outside trio.run
    return found
