"""Timeouts: how soon ``subprocess(..., timeout=0.2)`` gives control back, and what it leaves.

Three figures, each under trio and under asyncio, each against the raw
backend's own "run a process under a 0.2 s cancel scope" in the same run:

2. ``sleep`` that dies on SIGTERM: time until ``TimeoutError``; goal <= 0.3 s.
3. ``sh -c "sleep X & sleep X; wait"`` (a grandchild holds the output pipe):
   goal <= 0.35 s and no ``sleep`` left running.
4. A Python child that ignores SIGTERM, with ``kill_grace=0.5``: goal <=
   timeout + grace + 0.15 s = 0.85 s and nothing left. The baseline gets the
   same policy by hand (SIGTERM, 0.5 s, SIGKILL).

Every child sleeps for a duration unique to this run (``30.<pid>`` ...), so
leftovers are counted in ``/proc`` without confusing them with anyone else's,
and the baseline's leftovers are killed, by pid, after each round.
"""

from __future__ import annotations

import signal
import subprocess as stdlib_subprocess
import warnings
from collections.abc import Awaitable, Callable

import anyio
import trio

import corral
from _common import (
    BACKENDS,
    PY,
    count_procs,
    emit,
    kill_procs,
    log,
    marker,
    median,
    now,
    side_by_side,
)
from corral.util import subprocess

TIMEOUT = 0.2
GRACE = 0.5
#: Outer bound on a baseline that might never return (a grandchild holding its pipe).
BASELINE_CAP = 3.0
ROUNDS = 5
ROUNDS_TERM_IGNORED = 3

SLEEP = marker(30)
SLEEP_GRANDCHILD = marker(31)
SLEEP_TERM_IGNORED = marker(32)

SLEEP_ARGV = ["sleep", SLEEP]
GRANDCHILD_ARGV = ["sh", "-c", f"sleep {SLEEP_GRANDCHILD} & sleep {SLEEP_GRANDCHILD}; wait"]
TERM_IGNORED_ARGV = [
    PY,
    "-S",
    "-c",
    "import signal, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ready', flush=True)\n"
    f"time.sleep({SLEEP_TERM_IGNORED})\n",
]

Sample = tuple[float, float, float]
"""(seconds until control came back, processes left, SIGKILL warnings)."""


async def corral_timeout(argv: list[str], kill_grace: float | None, mark: str) -> Sample:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        async with corral.task("bench", kill_grace=kill_grace):
            started = now()
            try:
                await subprocess(argv, timeout=TIMEOUT)
            except TimeoutError:
                elapsed = now() - started
            else:
                raise AssertionError(f"{argv!r} did not time out")
            left = count_procs(mark)
    sigkills = sum("sent SIGKILL" in str(w.message) for w in caught)
    kill_procs(mark)
    return elapsed, float(left), float(sigkills)


def _term_then_kill(grace: float) -> Callable[[trio.Process], Awaitable[None]]:
    async def deliver_cancel(process: trio.Process) -> None:
        process.terminate()
        await trio.sleep(grace)
        process.kill()

    return deliver_cancel


async def trio_timeout(argv: list[str], kill_grace: float | None, mark: str) -> Sample:
    # None is trio's default: SIGTERM, then SIGKILL 5 s later.
    deliver_cancel = _term_then_kill(kill_grace) if kill_grace is not None else None
    started = now()
    with trio.move_on_after(BASELINE_CAP):
        with trio.move_on_after(TIMEOUT):
            await trio.run_process(
                argv,
                capture_stdout=True,
                capture_stderr=True,
                deliver_cancel=deliver_cancel,
            )
    elapsed = now() - started
    left = count_procs(mark)
    kill_procs(mark)
    return elapsed, float(left), 0.0


async def anyio_timeout(argv: list[str], kill_grace: float | None, mark: str) -> Sample:
    started = now()
    with anyio.move_on_after(BASELINE_CAP):
        if kill_grace is None:
            # anyio.run_process kills the child with SIGKILL when cancelled.
            with anyio.move_on_after(TIMEOUT):
                await anyio.run_process(argv)
        else:
            # anyio has no SIGTERM-then-SIGKILL policy: the same one, by hand.
            async with await anyio.open_process(
                argv, stdout=stdlib_subprocess.DEVNULL, stderr=stdlib_subprocess.DEVNULL
            ) as process:
                with anyio.move_on_after(TIMEOUT):
                    await process.wait()
                if process.returncode is None:
                    process.send_signal(signal.SIGTERM)
                    with anyio.move_on_after(kill_grace):
                        await process.wait()
                    if process.returncode is None:
                        process.kill()
                        await process.wait()
    elapsed = now() - started
    left = count_procs(mark)
    kill_procs(mark)
    return elapsed, float(left), 0.0


def measure(
    figure: str,
    argv: list[str],
    mark: str,
    *,
    kill_grace: float | None,
    goal_seconds: float,
    rounds: int,
    warmup: bool,
) -> None:
    for backend in BACKENDS:

        def run_corral(backend: str = backend) -> Sample:
            return anyio.run(corral_timeout, argv, kill_grace, mark, backend=backend)

        def run_baseline(backend: str = backend) -> Sample:
            if backend == "trio":
                return trio.run(trio_timeout, argv, kill_grace, mark)
            return anyio.run(anyio_timeout, argv, kill_grace, mark, backend=backend)

        log(f"{figure}, {backend}")
        ours, theirs = side_by_side(rounds, run_corral, run_baseline, label=backend, warmup=warmup)
        seconds = median([s[0] for s in ours])
        base_seconds = median([s[0] for s in theirs])
        left = int(sum(s[1] for s in ours))
        base_left = int(sum(s[1] for s in theirs))
        sigkills = int(sum(s[2] for s in ours))
        extra: dict[str, object] = {}
        met = seconds <= goal_seconds and left == 0
        if kill_grace is not None:
            # The figure only means something if the child really ignored SIGTERM.
            extra["corral_sigkill_warnings"] = sigkills
            met = met and sigkills == rounds
        if backend == "trio":
            baseline_is = "raw trio.run_process under trio.move_on_after"
            if kill_grace is not None:
                baseline_is += f" (deliver_cancel: SIGTERM, {kill_grace:g} s, SIGKILL)"
        else:
            baseline_is = "raw anyio.run_process under anyio.move_on_after"
            if kill_grace is not None:
                baseline_is = (
                    "raw anyio.open_process under anyio.move_on_after, "
                    f"then SIGTERM, {kill_grace:g} s, SIGKILL by hand"
                )
        emit(
            benchmark="timeout",
            figure=figure,
            backend=backend,
            corral=seconds,
            baseline=base_seconds,
            unit="s",
            goal=f"corral <= {goal_seconds:g} s, 0 left",
            met=met,
            corral_samples=[s[0] for s in ours],
            baseline_samples=[s[0] for s in theirs],
            corral_left=left,
            baseline_left=base_left,
            baseline_is=baseline_is,
            details=extra,
        )


def main() -> None:
    measure(
        f"timeout return time: sleep, timeout={TIMEOUT:g}",
        SLEEP_ARGV,
        SLEEP,
        kill_grace=None,
        goal_seconds=0.3,
        rounds=ROUNDS,
        warmup=True,
    )
    measure(
        f"timeout, grandchild holding the pipe: sh -c 'sleep & sleep; wait', timeout={TIMEOUT:g}",
        GRANDCHILD_ARGV,
        SLEEP_GRANDCHILD,
        kill_grace=None,
        goal_seconds=0.35,
        rounds=ROUNDS,
        warmup=False,
    )
    measure(
        f"timeout, child ignoring SIGTERM: timeout={TIMEOUT:g}, kill_grace={GRACE:g}",
        TERM_IGNORED_ARGV,
        SLEEP_TERM_IGNORED,
        kill_grace=GRACE,
        goal_seconds=TIMEOUT + GRACE + 0.15,
        rounds=ROUNDS_TERM_IGNORED,
        warmup=False,
    )


if __name__ == "__main__":
    main()
