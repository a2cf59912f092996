"""Terminating a child's whole process group: TERM, grace, KILL, reap.

Supervised children are started as leaders of their own session and process
group, so the group id equals the child's pid and signals sent to the group
reach every descendant that did not move itself elsewhere.

"Gone" means no live member is left: members that are already zombies count
as gone, because once they are reparented their reaping is up to init, which
in a container may never do it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import warnings
from typing import Protocol

import anyio

from .._core._procfs import group_has_live_member

__all__ = ["GroupProcess", "group_alive", "terminate_group"]

#: Upper bound on waiting for the kernel to hand back a SIGKILLed child.
REAP_TIMEOUT = 5.0
_POLL_FIRST = 0.001
_POLL_MAX = 0.05


class GroupProcess(Protocol):
    """What :func:`terminate_group` needs of a process handle."""

    @property
    def pid(self) -> int: ...
    @property
    def returncode(self) -> int | None: ...
    async def wait(self) -> int: ...


def _signal_group(pgid: int, sig: int) -> bool:
    """Send *sig* to group *pgid*; ``False`` if the group no longer exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        # Some member changed its credentials (setuid); the others got it.
        return True
    return True


def _signal_process(process: GroupProcess, sig: int) -> bool:
    """Send *sig* to *process*'s group, and to *process* itself if it left it.

    Returns ``False`` when there was no one left to signal.
    """
    pgid = process.pid
    sent = _signal_group(pgid, sig)
    if process.returncode is None:
        # A child that called setpgid()/setsid() itself is no longer reached
        # through its original group: signal it directly too.
        with contextlib.suppress(ProcessLookupError):
            if os.getpgid(pgid) != pgid:
                os.kill(pgid, sig)
                sent = True
    return sent


def group_alive(pgid: int) -> bool:
    """Return whether process group *pgid* still has a live (non-zombie) member.

    This is not a checkpoint. The common case, an empty group, costs one
    ``kill(-pgid, 0)``.
    """
    if not _signal_group(pgid, 0):
        return False
    return group_has_live_member(pgid)


async def _wait_group_gone(process: GroupProcess) -> None:
    await process.wait()
    delay = _POLL_FIRST
    while group_alive(process.pid):
        await anyio.sleep(delay)
        delay = min(delay * 2, _POLL_MAX)


async def terminate_group(process: GroupProcess, grace: float, description: str) -> None:
    """Stop every process in *process*'s group and reap *process*.

    Sends SIGTERM to the group, waits up to *grace* seconds for the child to
    exit and the group to empty, then sends SIGKILL to the group, waits at
    most :data:`REAP_TIMEOUT` seconds for the child to be reaped, and emits a
    :class:`RuntimeWarning` about the escalation. Returns as soon as the group is gone: a child
    that dies on SIGTERM costs no grace at all.

    Call it inside a shielded cancel scope: it must run to the end even when
    the caller is being cancelled, and it bounds its own waiting.
    """
    if not _signal_process(process, signal.SIGTERM) and process.returncode is not None:
        return
    with anyio.move_on_after(grace) as scope:
        await _wait_group_gone(process)
    if not scope.cancelled_caught:
        return
    killed = _signal_process(process, signal.SIGKILL)
    with anyio.move_on_after(REAP_TIMEOUT), contextlib.suppress(ProcessLookupError):
        await process.wait()
    if killed:
        # Warn only once the child is reaped: under ``-W error`` the warning
        # raises, and it must not cut the cleanup short.
        warnings.warn(
            f"{description} (process group {process.pid}) was still running {grace:g} s "
            "after SIGTERM; sent SIGKILL",
            RuntimeWarning,
            stacklevel=4,
        )
