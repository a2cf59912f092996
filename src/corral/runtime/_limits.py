"""Named concurrency limits: ``concurrency()`` and ``concurrency_status()``.

A *named limit* is a capacity limiter looked up by key in a registry that
belongs to the running event loop (a run variable), so two
``trio.run`` calls in one process, or trio followed by asyncio, never share a
limiter. The first request for a key fixes its limit; a later request with a
different limit is logged once and otherwise ignored, as in ``inspect_ai``.

Each ``async with concurrency(...)`` borrows one slot on behalf of its own
context-manager object rather than the current task, so one task may hold
several slots of the same limit (nested use takes one slot each).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, final

import anyio
import sniffio
import trio

from ._checks import check_limit

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import TracebackType

__all__ = ["Limiter", "LimiterStatistics", "concurrency", "concurrency_status"]

logger = logging.getLogger("corral.concurrency")


class _NativeLimiter(Protocol):
    """The part of ``trio.CapacityLimiter`` / ``anyio.CapacityLimiter`` we use."""

    @property
    def total_tokens(self) -> float: ...
    @property
    def borrowed_tokens(self) -> int: ...
    async def acquire_on_behalf_of(self, borrower: object) -> None: ...
    def release_on_behalf_of(self, borrower: object) -> None: ...


def _native_limiter(limit: int) -> _NativeLimiter:
    # Under trio, use trio's limiter directly: anyio's wrapper would add a call
    # layer to every acquire, and concurrency() sits on hot paths.
    if sniffio.current_async_library() == "trio":
        return trio.CapacityLimiter(limit)
    return anyio.CapacityLimiter(limit)


@dataclass(frozen=True, slots=True)
class LimiterStatistics:
    """A snapshot of a :class:`Limiter`.

    Attributes:
        name: The display name given by the first request for the key.
        key: The registry key.
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

    Internal: users see limiters through :func:`concurrency_status` and
    ``Task.statistics()``.
    """

    __slots__ = ("_native", "_warned", "key", "limit", "name", "visible")

    def __init__(self, name: str, key: str, limit: int, visible: bool) -> None:
        self.name = name
        self.key = key
        self.limit = limit
        self.visible = visible
        self._native = _native_limiter(limit)
        self._warned: set[int] = set()

    def __repr__(self) -> str:
        return (
            f"<corral Limiter {self.name!r} key={self.key!r} "
            f"in_use={self._native.borrowed_tokens}/{self.limit}>"
        )

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
        in_use = self._native.borrowed_tokens
        stats = getattr(self._native, "statistics", None)
        waiting = stats().tasks_waiting if stats is not None else 0
        return LimiterStatistics(self.name, self.key, in_use, self.limit, waiting)


@final
class _Registry:
    __slots__ = ("_limiters",)

    def __init__(self) -> None:
        self._limiters: dict[str, Limiter] = {}

    def get_or_create(self, name: str, key: str, limit: int, visible: bool = True) -> Limiter:
        limiter = self._limiters.get(key)
        if limiter is None:
            limiter = self._limiters[key] = Limiter(name, key, limit, visible)
        elif limiter.limit != limit and limit not in limiter._warned:
            limiter._warned.add(limit)
            logger.warning(
                "concurrency limit %r already exists with %d slot(s); "
                "the request for %d slot(s) is ignored (the first limit wins)",
                key,
                limiter.limit,
                limit,
            )
        return limiter

    def discard(self, limiter: Limiter) -> None:
        if self._limiters.get(limiter.key) is limiter:
            del self._limiters[limiter.key]

    def __iter__(self) -> Iterator[Limiter]:
        return iter(list(self._limiters.values()))


# One registry per event loop run. anyio's RunVar would do, but it looks the
# backend up on every call and concurrency() sits on hot paths, so each
# backend gets its own cheap lookup: trio's RunVar, and a weak mapping keyed
# by the running asyncio loop.
_trio_registry: trio.lowlevel.RunVar[_Registry] = trio.lowlevel.RunVar("corral.registry")
_asyncio_registries: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Registry] = (
    weakref.WeakKeyDictionary()
)


def current_registry() -> _Registry:
    """Return the running event loop's registry, creating it on first use.

    Raises:
        RuntimeError: No trio or asyncio event loop is running in this thread.
    """
    loop = asyncio._get_running_loop()
    if loop is not None:
        registry = _asyncio_registries.get(loop)
        if registry is None:
            registry = _asyncio_registries[loop] = _Registry()
        return registry
    try:
        return _trio_registry.get()
    except LookupError:
        registry = _Registry()
        _trio_registry.set(registry)
        return registry


@final
class _ConcurrencySlot:
    """The async context manager returned by :func:`concurrency`."""

    __slots__ = ("_entered", "_key", "_limit", "_limiter", "_name", "_visible")

    def __init__(self, name: str, limit: int, key: str, visible: bool) -> None:
        self._name = name
        self._limit = limit
        self._key = key
        self._visible = visible
        self._limiter: Limiter | None = None

    async def __aenter__(self) -> None:
        if self._limiter is not None:
            raise RuntimeError(
                f"this concurrency({self._name!r}) context manager is already in use; "
                "call concurrency() again for another slot"
            )
        limiter = current_registry().get_or_create(
            self._name, self._key, self._limit, self._visible
        )
        await limiter._native.acquire_on_behalf_of(self)
        self._limiter = limiter

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        limiter = self._limiter
        assert limiter is not None
        self._limiter = None
        limiter._native.release_on_behalf_of(self)


def concurrency(
    name: str, concurrency: int, key: str | None = None, visible: bool = True
) -> _ConcurrencySlot:
    """Hold one slot of the named limit *key* for the body of an ``async with``.

    Args:
        name: Display name of the limit (shown by :func:`concurrency_status`).
        concurrency: How many holders the limit admits at once (>= 1). Only
            the first request for a key sets it; a later request with another
            number is logged once as a warning and otherwise ignored.
        key: Registry key; defaults to *name*. Requests with the same key
            share one limiter, within one event loop.
        visible: Whether :func:`concurrency_status` lists the limit.

    Returns:
        An async context manager. Entering it is a checkpoint and waits for a
        free slot; leaving it gives the slot back, also when the body raises.

    Raises:
        TypeError: *name* or *key* is not a ``str``, or *concurrency* not an
            ``int``.
        ValueError: *concurrency* is less than 1.

    **Cancellation:** if the waiting task is cancelled, no slot is taken and
    the cancellation propagates. Limiters belong to the running event loop:
    ``concurrency()`` must be entered inside ``trio.run``/``asyncio.run``.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    check_limit("concurrency", concurrency)
    if key is not None and not isinstance(key, str):
        raise TypeError(f"key must be a str or None, got {type(key).__name__}")
    return _ConcurrencySlot(name, concurrency, key or name, bool(visible))


def concurrency_status() -> dict[str, tuple[int, int]]:
    """Return ``{name: (in_use, limit)}`` for the visible limits of this event loop.

    Limits are listed under their display name; when two keys share one, the
    later is listed as ``"name [key]"``. This is not a checkpoint. It must be
    called inside a running event loop.
    """
    status: dict[str, tuple[int, int]] = {}
    for limiter in current_registry():
        if limiter.visible:
            # Two keys may share a display name: never let one hide the other.
            name = limiter.name if limiter.name not in status else f"{limiter.name} [{limiter.key}]"
            status[name] = (limiter._native.borrowed_tokens, limiter.limit)
    return status
