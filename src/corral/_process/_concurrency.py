"""Named concurrency limits: ``concurrency()`` and ``concurrency_status()``.

A named limit is a :class:`~corral._core._limiters.Limiter` looked up by key
in the running event loop's registry (see :mod:`corral._core._limiters`).
Each ``async with concurrency(...)`` borrows one slot on behalf of its own
context-manager object rather than the current task, so one task may hold
several slots of the same limit (nested use takes one slot each), and yields
the limit's :class:`~corral._core._limiters.ConcurrencyLimit`, through which
it can be read and resized.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, final

from .._core._checks import check_bool, check_limit, check_optional_str, check_str
from .._core._limiters import current_registry
from .._core._working import waiting

if TYPE_CHECKING:
    from types import TracebackType

    from .._core._limiters import ConcurrencyLimit, Limiter

__all__ = ["concurrency", "concurrency_status"]


@final
class _ConcurrencySlot:
    """The async context manager returned by :func:`concurrency`."""

    __slots__ = ("_key", "_limit", "_limiter", "_name", "_visible")

    def __init__(self, name: str, limit: int, key: str, visible: bool) -> None:
        self._name = name
        self._limit = limit
        self._key = key
        self._visible = visible
        self._limiter: Limiter | None = None

    async def __aenter__(self) -> ConcurrencyLimit:
        if self._limiter is not None:
            raise RuntimeError(
                f"this concurrency({self._name!r}) context manager is already in use; "
                "call concurrency() again for another slot"
            )
        limiter = current_registry().named(self._name, self._key, self._limit, self._visible)
        with waiting():  # the wait for a slot is not working time
            await limiter._native.acquire_on_behalf_of(self)
        self._limiter = limiter
        return limiter.handle

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
    name: str,
    concurrency: int,
    key: str | None = None,
    visible: bool = True,
    *,
    resizable: bool = False,
) -> _ConcurrencySlot:
    """Hold one slot of the named limit *key* for the body of an ``async with``.

    ``async with concurrency(name, n) as limit:`` yields the limit's
    :class:`~corral._core._limiters.ConcurrencyLimit` (``name``,
    ``visible``, ``concurrency``, ``value``, ``in_use``). Assigning
    ``limit.concurrency`` resizes the limit live for every holder of the key:
    raising it admits waiters at once, lowering it lets the holders finish
    (``in_use`` exceeds the limit until they have).

    Args:
        name: Display name of the limit (shown by :func:`concurrency_status`).
        concurrency: How many holders the limit admits at once (>= 1). Only
            the first request for a key sets it; a later request with another
            number is logged once as a warning and otherwise ignored (resize
            through the yielded object instead).
        key: Registry key; defaults to *name*. Requests with the same key
            share one limiter, within one event loop.
        visible: Whether :func:`concurrency_status` lists the limit.
        resizable: Accepted for ``inspect_ai`` compatibility. Every named
            limit can be resized, as in ``inspect_ai``'s default registry;
            this says that the caller means to. Keyword-only: corral has no
            ``adaptive`` parameter, which precedes it in ``inspect_ai``.

    Returns:
        An async context manager. Entering it is a checkpoint and waits for a
        free slot, first come first served; leaving it gives the slot back,
        also when the body raises, and is not a checkpoint.

    Raises:
        TypeError: *name* or *key* is not a ``str``, *concurrency* not an
            ``int``, or *resizable* not a ``bool``.
        ValueError: *concurrency* is less than 1.

    **Cancellation:** if the waiting task is cancelled, no slot is taken and
    the cancellation propagates. Limiters belong to the running event loop:
    ``concurrency()`` must be entered inside ``trio.run``/``asyncio.run``.
    """
    check_str("name", name)
    check_limit("concurrency", concurrency)
    check_optional_str("key", key)
    check_bool("resizable", resizable)
    return _ConcurrencySlot(name, concurrency, key or name, bool(visible))


def concurrency_status() -> dict[str, tuple[int, int]]:
    """Return ``{name: (in_use, limit)}`` for the visible limits of this event loop.

    Limits are listed under their display name; when two share one (two keys,
    or two tasks with the same name and each a limit of its own), the later
    is listed as ``"name [key]"``. The limits of a task scope are listed only
    while it runs. ``limit`` is the live limit, as last resized, and
    ``in_use`` may exceed it while a lowered limit drains. This is not a
    checkpoint. It must be called inside a running event loop.
    """
    status: dict[str, tuple[int, int]] = {}
    for limiter in current_registry():
        if limiter.visible:
            # Two limits may share a display name: never let one hide the other.
            name = limiter.name if limiter.name not in status else f"{limiter.name} [{limiter.key}]"
            status[name] = (limiter.in_use, limiter.limit)
    return status
