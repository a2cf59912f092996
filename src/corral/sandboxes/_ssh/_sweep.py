"""Removing what dead harnesses left on SSH hosts (see :mod:`corral.sandboxes._sweep`).

Each recorded SSH sandbox carries its host and the connection settings it
was made with. The leftovers are grouped by those settings, each group is
reached over one connection (all hosts at once), and each leftover's
processes (by their tag) and directory are removed with the same script a
sample's cleanup runs.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any

import anyio

from .._errors import SandboxUnavailableError
from ._bridge import run_on_ssh_loop
from ._config import SSHHostConfig, SSHSandboxConfig
from ._pool import hold, let_go
from ._script import cleanup_script, count_script

if TYPE_CHECKING:
    from .._sweep import Leftover, SweepResult

__all__ = ["count_ssh", "record_details", "sweep_ssh"]

#: The first line the removal prints when the directory was there.
_FOUND = "corral-found"


def record_details(
    config: SSHSandboxConfig, host: SSHHostConfig, workdir: str, tag: str
) -> dict[str, Any]:
    """What to record of a sandbox of *config* in *workdir* on *host*."""
    settings = config.model_copy(update={"hosts": [host]})
    return {"dir": workdir, "tag": tag, "config": settings.model_dump(mode="json")}


def _settings(leftover: Leftover, override: SSHSandboxConfig | None) -> SSHSandboxConfig:
    recorded = SSHSandboxConfig.model_validate(leftover.details["config"])
    if override is None:
        return recorded
    host = recorded.hosts[0]
    for candidate in override.hosts:
        if (candidate.host, candidate.port) == (host.host, host.port):
            return override.model_copy(update={"hosts": [candidate]})
    return recorded


async def _remove_all(config: SSHSandboxConfig, leftovers: list[Leftover]) -> list[SweepResult]:
    """On the SSH loop: reach the host of *config* and remove each of *leftovers* there."""
    from .._sweep import SweepResult

    hosts = hold(config)
    try:
        try:
            await hosts.connect_all()
        except SandboxUnavailableError as exc:
            return [SweepResult(leftover, error=str(exc)) for leftover in leftovers]
        pool = hosts.pools[0]
        results = []
        for leftover in leftovers:
            workdir = str(leftover.details["dir"])
            script = f"[ -e {shlex.quote(workdir)} ] && echo {_FOUND}\n" + cleanup_script(
                workdir, str(leftover.details["tag"])
            )
            try:
                output = (await pool.run(script, "cleanup")).split()
            except SandboxUnavailableError as exc:
                results.append(SweepResult(leftover, error=str(exc)))
                continue
            found = _FOUND in output
            killed = int(output[-1]) if output and output[-1].isdigit() else 0
            if not found and not killed:
                results.append(SweepResult(leftover))
                continue
            what = f"{workdir} on {pool.label}"
            if killed:
                what += f" ({killed} process{'es' if killed > 1 else ''} stopped)"
            results.append(SweepResult(leftover, removed=what))
        return results
    finally:
        await let_go(hosts)


async def _count_all(config: SSHSandboxConfig, leftovers: list[Leftover]) -> list[int | None]:
    """On the SSH loop: how many processes of each of *leftovers* run on the host of *config*."""
    hosts = hold(config)
    try:
        try:
            await hosts.connect_all()
        except SandboxUnavailableError:
            return [None] * len(leftovers)
        pool = hosts.pools[0]
        counts: list[int | None] = []
        for leftover in leftovers:
            try:
                output = (
                    await pool.run(count_script(str(leftover.details["tag"])), "count")
                ).strip()
            except SandboxUnavailableError:
                counts.append(None)
                continue
            counts.append(int(output) if output.isdigit() else None)
        return counts
    finally:
        await let_go(hosts)


async def count_ssh(leftovers: list[Leftover]) -> list[int | None]:
    """How many processes tagged with each SSH sandbox of *leftovers* still run on its host.

    Read only: nothing is stopped or removed. ``None`` where the host could
    not be reached or the record is damaged. Processes of other users (run
    through sudo) cannot be read, and are not counted.
    """
    groups: dict[str, tuple[SSHSandboxConfig, list[int]]] = {}
    counts: list[int | None] = [None] * len(leftovers)
    for index, leftover in enumerate(leftovers):
        try:
            settings = _settings(leftover, None)
            if not isinstance(leftover.details.get("tag"), str):
                continue
        except (KeyError, TypeError, ValueError):
            continue
        groups.setdefault(settings.model_dump_json(), (settings, []))[1].append(index)

    async def one(settings: SSHSandboxConfig, indices: list[int]) -> None:
        found = await run_on_ssh_loop(_count_all, settings, [leftovers[i] for i in indices])
        for index, count in zip(indices, found, strict=True):
            counts[index] = count

    async with anyio.create_task_group() as tg:
        for settings, indices in groups.values():
            tg.start_soon(one, settings, indices)
    return counts


async def sweep_ssh(leftovers: list[Leftover], config: Any = None) -> list[SweepResult]:
    """Remove SSH *leftovers*, each host's over one connection, all hosts at once.

    Args:
        leftovers: From :func:`corral.sandboxes._sweep.sweep`.
        config: A configuration whose settings (keys, known hosts) are used
            for its own hosts, instead of the recorded ones.

    Raises:
        ValueError, FileNotFoundError: *config* is invalid.
    """
    override = SSHSandboxConfig.load(config) if config is not None else None
    groups: dict[str, tuple[SSHSandboxConfig, list[Leftover]]] = {}
    results: dict[int, SweepResult] = {}
    for leftover in leftovers:
        try:
            settings = _settings(leftover, override)
            if not all(isinstance(leftover.details.get(key), str) for key in ("dir", "tag")):
                raise ValueError("no dir or tag")
        except (KeyError, TypeError, ValueError) as exc:
            from .._sweep import SweepResult

            results[id(leftover)] = SweepResult(leftover, error=f"its record is damaged: {exc!r}")
            continue
        groups.setdefault(settings.model_dump_json(), (settings, []))[1].append(leftover)

    async def one(settings: SSHSandboxConfig, group: list[Leftover]) -> None:
        for result in await run_on_ssh_loop(_remove_all, settings, group):
            results[id(result.leftover)] = result

    async with anyio.create_task_group() as tg:
        for settings, group in groups.values():
            tg.start_soon(one, settings, group)
    return [results[id(leftover)] for leftover in leftovers]
