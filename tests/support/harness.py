"""A harness for tests to kill: local-sandbox samples and bare ``subprocess()`` calls, asleep.

Run as ``python tests/support/harness.py BACKEND FIFO MARKER [options]`` (it imports
nothing from ``tests``). Every command writes one byte to the FIFO once it runs; the
test knows every command by *MARKER* in its command line, and the harness's guardian
as its child running ``_reaper.py``.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import threading

import anyio

import corral
from corral.util import ExecRemoteStreamingOptions, sandbox, subprocess

STYLES = ("plain", "setsid", "ignore-term", "trap-term")


def command(style: str, fifo: str, marker: str) -> str:
    """The shell command of one sample or call, in *style*."""
    ready = f"printf x > {shlex.quote(fifo)}"
    sleep = f"exec sleep {marker}"
    if style == "setsid":
        # The grandchild leaves the group and the session; it signals once it has.
        return f"setsid sh -c {shlex.quote(f'{ready}; {sleep}')} & {ready}; {sleep}"
    if style == "ignore-term":
        return f"trap '' TERM; {ready}; {sleep}"
    if style == "trap-term":
        # Signals once more when the runtime stops it, then keeps running. Short
        # sleeps: a SIGTERM that came while the shell forked one reaches the shell
        # only (it runs the trap when that sleep ends), not the sleep.
        return f": {marker}; trap {shlex.quote(ready)} TERM; {ready}; while :; do sleep 0.1; done"
    return f"{ready}; {sleep}"


async def main(args: argparse.Namespace) -> None:
    cmd = command(args.style, args.fifo, args.marker)
    if args.signals_to_a_thread:
        # The kernel gives a process's signal to a thread that does not block it:
        # here only this idle thread, as it may pick any thread of a real harness.
        threading.Thread(target=threading.Event().wait, daemon=True).start()
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGHUP})
    if args.own_handler:
        signal.signal(signal.SIGTERM, lambda signum, frame: print("own handler", flush=True))

    async def sample(task: corral.Task, n: int) -> None:
        async with task.sample(n):
            if args.stream:  # exec_remote, its events read as they come
                options = ExecRemoteStreamingOptions(user=args.user)
                async for _ in await sandbox().exec_remote(["sh", "-c", cmd], options):
                    pass
            else:
                await sandbox().exec(["sh", "-c", cmd], user=args.user)

    async def bare() -> None:
        await subprocess(["sh", "-c", cmd])

    if args.raw:  # the baseline: anyio.run_process, no corral at all
        async with anyio.create_task_group() as tg:
            for _ in range(args.bare):
                tg.start_soon(anyio.run_process, ["sh", "-c", cmd])
        return

    spec = ("ssh", args.ssh_config) if args.ssh_config else "local"
    async with corral.task(
        "harness", sandbox=spec, max_subprocesses=1000, kill_grace=args.kill_grace
    ) as task:
        for n in range(args.samples):
            task.start_soon(sample, task, n)
        for _ in range(args.bare):
            task.start_soon(bare)
    print("after the task", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("backend")
    parser.add_argument("fifo")
    parser.add_argument("marker")
    parser.add_argument("--samples", type=int, default=0)
    parser.add_argument("--bare", type=int, default=0)
    parser.add_argument("--style", choices=STYLES, default="plain")
    parser.add_argument("--user", default=None)
    parser.add_argument("--kill-grace", type=float, default=2.0)
    parser.add_argument("--own-handler", action="store_true")
    parser.add_argument("--signals-to-a-thread", action="store_true")
    parser.add_argument("--ssh-config", default=None, help="a config file: ssh samples")
    parser.add_argument("--raw", action="store_true", help="bare calls of anyio.run_process")
    parser.add_argument("--stream", action="store_true", help="samples use exec_remote")
    args = parser.parse_args()
    anyio.run(main, args, backend=args.backend)
