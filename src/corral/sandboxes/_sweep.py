"""Sweeping what dead harnesses left: ``corral sandbox cleanup`` for the built-in providers.

The runtime records every local and SSH sandbox when it is made and
resolves it when its cleanup succeeds (see :mod:`corral._core._leftovers`).
:func:`sweep` reads those records, keeps the entries of harnesses that are
no longer running, and asks the provider to remove each one: its processes
(by the tag they carry) and its directory. An entry whose removal failed
stays recorded, so the next sweep tries again; one that succeeded, or found
nothing left, is dropped. A live harness's entries are never touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._core._leftovers import harness_records

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["SWEPT_TYPES", "Leftover", "SweepResult", "print_sweep", "sweep"]


@dataclass(frozen=True, slots=True)
class Leftover:
    """A recorded sandbox of a harness that is gone.

    Attributes:
        type: The sandbox type.
        id: Its id (the name of its directory).
        details: What the provider recorded to find it.
        harness: The pid of the harness that made it.
        record: The file it is recorded in.
    """

    type: str
    id: str
    details: dict[str, Any]
    harness: int
    record: str


@dataclass(frozen=True, slots=True)
class SweepResult:
    """What sweeping one leftover did.

    Attributes:
        leftover: The leftover.
        removed: What was removed (``None``: nothing of it was left).
        error: Why it could not be removed (it stays recorded), or ``None``.
    """

    leftover: Leftover
    removed: str | None = None
    error: str | None = None


def _sweeper(type: str) -> Callable[[list[Leftover], Any], Awaitable[list[SweepResult]]]:
    # Through the registry, as a sample finds its provider: importing the SSH
    # provider here would make asyncssh a dependency of the local one.
    from ._registry import sandbox_class

    sweeper: Callable[[list[Leftover], Any], Awaitable[list[SweepResult]]]
    sweeper = sandbox_class(type)._sweep_leftovers  # type: ignore[attr-defined]
    return sweeper


#: The sandbox types whose leftovers :func:`sweep` finds.
SWEPT_TYPES = ("local", "ssh")


async def sweep(type: str, id: str | None = None, config: Any = None) -> list[SweepResult]:
    """Remove the recorded *type* sandboxes (or only *id*) of harnesses that are gone.

    Args:
        type: ``"local"`` or ``"ssh"``.
        id: Only this sandbox.
        config: For ``"ssh"``, a configuration (as ``sample_init`` takes it)
            whose connection settings are used for its hosts; other hosts
            are reached with the settings recorded with each sandbox.

    Returns:
        One result per leftover found, in the records' order.

    Raises:
        ValueError: *type* is not swept here; or *id* is not a recorded
            sandbox of *type*, or it belongs to a harness that is still
            running (the message says which).

    **Cancellation:** a leftover whose removal had not finished stays recorded.
    """
    if type not in SWEPT_TYPES:
        raise ValueError(f"no recorded leftovers for sandbox type {type!r}")
    records = harness_records()
    dead: list[Leftover] = []
    running: list[int] = []
    for record in records:
        for entry in record.entries.values():
            if entry.get("type") != type or (id is not None and entry.get("id") != id):
                continue
            if record.alive:
                running.append(record.pid)
            else:
                dead.append(Leftover(type, str(entry["id"]), entry, record.pid, record.path))
    if id is not None and not dead:
        if running:
            raise ValueError(
                f"{type} sandbox {id!r} belongs to a harness that is still running "
                f"(pid {running[0]}); it was not touched"
            )
        raise ValueError(f"no {type} sandbox {id!r} was left behind by a harness")
    if not dead:
        return []
    results = await _sweeper(type)(dead, config)
    done = {(r.leftover.record, r.leftover.id) for r in results if r.error is None}
    for record in records:  # only dead harnesses' records have anything done
        keys = {key for key in record.entries if (record.path, key) in done}
        if keys:
            record.resolve(keys)
    return results


async def print_sweep(type: str, id: str | None) -> None:
    """:func:`sweep`, printing each thing removed: the built-in providers' ``cli_cleanup``.

    Raises:
        ValueError: As :func:`sweep`.
        OSError: Something could not be removed (it stays recorded).
    """
    failed = []
    for result in await sweep(type, id):
        if result.error is not None:
            failed.append(f"{result.leftover.id}: {result.error}")
        elif result.removed is not None:
            print(f"{type}: removed {result.removed}")
    if failed:
        raise OSError("could not remove " + "; ".join(failed))
