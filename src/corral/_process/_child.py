"""Starting a child on the event loop thread, and waiting for it on a pidfd.

``anyio.open_process`` goes through each backend's own machinery: trio runs
``Popen`` in a worker thread, and asyncio wraps the child in a transport and
waits for it in a child-watcher thread. Each spawn then costs thread hops
and, under asyncio, a thread per running child. Here ``Popen`` runs on the
event loop thread, as asyncio itself runs it: CPython spawns with ``vfork``
(no ``preexec_fn`` is ever given), so the loop is held only until the child
has called ``exec`` (a fraction of a millisecond). The exit is then awaited
on a pidfd (Linux 5.3 and later), which becomes readable when the child
exits, with the loop's own ``wait_readable``; the child is reaped then.
This is about 1.3-1.5x the spawn rate of ``trio.run_process`` and
``anyio.run_process`` on this kind of machine (see ``docs/performance.md``).

On a kernel without pidfds (before Linux 5.3) the child is waited for in a
worker thread instead.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
import anyio.to_thread

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Mapping


__all__ = ["Child", "start_child"]


class Child:
    """A child started by :func:`start_child`, waited for on its pidfd.

    Call :meth:`close` once it has been reaped (or given up on).
    """

    __slots__ = ("_pidfd", "_popen")

    def __init__(self, popen: subprocess.Popen[bytes], pidfd: int | None) -> None:
        self._popen = popen
        self._pidfd: int | None = pidfd

    @property
    def pid(self) -> int:
        """The child's pid (its process group id too)."""
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        """Its exit status once reaped (``-N`` for signal ``N``), else ``None``."""
        return self._popen.returncode

    async def wait(self) -> int:
        """Wait until the child has exited, reap it, and return its exit status.

        This is a checkpoint. **Cancellation:** the child is left running and
        unreaped; waiting again works.
        """
        popen = self._popen
        if popen.returncode is not None:
            await anyio.lowlevel.checkpoint()
        elif self._pidfd is None:  # no pidfds on this kernel
            await anyio.to_thread.run_sync(popen.wait, abandon_on_cancel=True)
        while popen.returncode is None and self._pidfd is not None:
            await anyio.wait_readable(self._pidfd)
            popen.poll()  # exited: this reaps it without blocking
        return popen.returncode if popen.returncode is not None else -1

    def close(self) -> None:
        """Close the pidfd (idempotent); :meth:`wait` then no longer waits."""
        fd, self._pidfd = self._pidfd, None
        if fd is not None:
            os.close(fd)


def _popen(
    argv: list[str],
    stdin: int,
    stdout: int | None,
    stderr: int | None,
    cwd: str | None,
    env: Mapping[str, str] | Mapping[bytes, bytes],
) -> subprocess.Popen[bytes]:
    import subprocess  # by the first spawn: it is not a small import

    return subprocess.Popen(
        argv,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        cwd=cwd,
        env=env,
        start_new_session=True,
    )


async def start_child(
    argv: list[str],
    *,
    stdin: int,
    stdout: int | None,
    stderr: int | None,
    cwd: str | None,
    env: Mapping[str, str] | Mapping[bytes, bytes],
) -> Child:
    """Start *argv* as the leader of a new session and process group.

    The file descriptors are the child's ends (``subprocess.DEVNULL`` for
    stdin allowed); the caller closes its own copies. This is a checkpoint.

    Raises:
        OSError: The program could not be started (``FileNotFoundError``,
            ``PermissionError``, ...).
    """
    await anyio.lowlevel.checkpoint()
    # On this thread, deliberately: see the module's docstring.
    popen = _popen(argv, stdin, stdout, stderr, cwd, env)
    try:
        pidfd: int | None = os.pidfd_open(popen.pid)
    except OSError:  # a kernel before 5.3: the child is waited for from a thread
        pidfd = None
    return Child(popen, pidfd)
