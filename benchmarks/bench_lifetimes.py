"""How fast nothing is left once a harness is killed, and what guarding costs a spawn.

Each figure runs a real harness process (``tests/support/harness.py``) whose
commands each run ``sleep``, waits until all of them run (they signal a
FIFO), kills it, and times how long until none of its commands is alive
(polling ``/proc`` every 10 ms, for at most 15 s). Figures, per backend:

* **SIGKILL -> 0 left**: 50 local-sandbox samples (goal <= 2 s), and 10 SSH
  samples on the suite's real sshd (goal <= 5 s). Baseline: a harness of 50
  bare ``anyio.run_process`` calls; its children are counted 5 s after the
  signal (they keep running: the figure is how many).
* **SIGTERM -> exit**: 50 local sandboxes (goal <= 1 s) and 50 SSH sandboxes
  (goal <= 3 s), from the signal to the harness's exit, cleanup done.
* **spawn throughput with the guardian**: as ``bench_subprocess.py`` (400 x
  ``true``, 16 at once), corral with its guardian on, raw
  ``trio.run_process`` / ``anyio.run_process``, and corral with the guardian
  off, alternating round by round; goal: corral/raw >= 1.0.

Without sshd (not root) the SSH figures are skipped with a note.
"""

from __future__ import annotations

import shutil
import signal
import tempfile
import time
from pathlib import Path

import anyio
import trio
from tests.support.killable import Harness, HarnessStarter
from tests.support.sshd import OpenSSHServer, SSHServerUnavailable

import corral
from _common import BACKENDS, emit, log, median, now
from corral._process import _guardian
from corral.util import subprocess

BENCHMARK = "lifetimes"
CAP = 15.0
RAW_WAIT = 5.0
N = 400
AT_ONCE = 16
ROUNDS = 7


def _until_none_left(harness: Harness) -> float:
    """Seconds from now until none of *harness*'s commands is alive (``inf`` after CAP)."""
    start = now()
    while harness.commands():
        if now() - start > CAP:
            return float("inf")
        time.sleep(0.01)
    return now() - start


def _killed(
    starter: HarnessStarter,
    backend: str,
    sig: signal.Signals,
    samples: int,
    sandbox_config: dict[str, object] | None = None,
) -> float:
    harness = starter(backend, samples=samples, sandbox_config=sandbox_config)
    start = now()
    harness.process.send_signal(sig)
    if sig == signal.SIGKILL:
        harness.process.wait()
        return now() - start + _until_none_left(harness)
    harness.process.wait(timeout=60)
    return now() - start


def bench_kill(starter: HarnessStarter, server: OpenSSHServer | None) -> None:
    for backend in BACKENDS:
        raw = starter(backend, bare=50, raw=True)
        raw.process.send_signal(signal.SIGKILL)
        raw.process.wait()
        deadline = now() + RAW_WAIT
        while raw.commands() and now() < deadline:
            time.sleep(0.05)
        raw_left = len(raw.commands())
        local = _killed(starter, backend, signal.SIGKILL, samples=50)
        emit(
            benchmark=BENCHMARK,
            figure="SIGKILL of a harness with 50 local sandboxes asleep -> 0 processes left",
            backend=backend,
            corral=round(local, 3),
            baseline=None,
            unit="s",
            goal="<= 2 s",
            met=local <= 2.0,
            baseline_is=f"raw anyio.run_process harness: {raw_left} of 50 still running "
            f"{RAW_WAIT:g} s after SIGKILL",
        )
        term = _killed(starter, backend, signal.SIGTERM, samples=50)
        emit(
            benchmark=BENCHMARK,
            figure="SIGTERM of a harness with 50 local sandboxes asleep -> exit, cleaned up",
            backend=backend,
            corral=round(term, 3),
            baseline=None,
            unit="s",
            goal="<= 1 s",
            met=term <= 1.0,
        )
        if server is None:
            continue
        config = server.sandbox_config()
        remote = _killed(starter, backend, signal.SIGKILL, samples=10, sandbox_config=config)
        emit(
            benchmark=BENCHMARK,
            figure="SIGKILL of a harness with 10 SSH sandboxes asleep -> 0 remote processes left",
            backend=backend,
            corral=round(remote, 3),
            baseline=None,
            unit="s",
            goal="<= 5 s",
            met=remote <= 5.0,
        )
        term = _killed(starter, backend, signal.SIGTERM, samples=50, sandbox_config=config)
        emit(
            benchmark=BENCHMARK,
            figure="SIGTERM of a harness with 50 SSH sandboxes asleep -> exit, cleaned up",
            backend=backend,
            corral=round(term, 3),
            baseline=None,
            unit="s",
            goal="<= 3 s",
            met=term <= 3.0,
        )


async def _corral_spawn() -> float:
    start = now()
    async with corral.task("bench", max_subprocesses=AT_ONCE) as task:
        for _ in range(N):
            task.start_soon(subprocess, ["true"])
    return N / (now() - start)


async def _raw_spawn_trio() -> float:
    limiter = trio.CapacityLimiter(AT_ONCE)

    async def one() -> None:
        async with limiter:
            await trio.run_process(["true"], capture_stdout=True, capture_stderr=True)

    start = now()
    async with trio.open_nursery() as nursery:
        for _ in range(N):
            nursery.start_soon(one)
    return N / (now() - start)


async def _raw_spawn_anyio() -> float:
    limiter = anyio.CapacityLimiter(AT_ONCE)

    async def one() -> None:
        async with limiter:
            await anyio.run_process(["true"])

    start = now()
    async with anyio.create_task_group() as tg:
        for _ in range(N):
            tg.start_soon(one)
    return N / (now() - start)


def bench_spawn() -> None:
    for backend in BACKENDS:
        guarded: list[float] = []
        raw: list[float] = []
        unguarded: list[float] = []
        anyio.run(_corral_spawn, backend=backend)  # warm up, and start the guardian
        for round_ in range(ROUNDS):
            order = [("guarded", guarded), ("raw", raw), ("unguarded", unguarded)]
            if round_ % 2:
                order.reverse()
            for name, samples in order:
                _guardian._guardian.disabled = name == "unguarded"
                raw_run = _raw_spawn_trio if backend == "trio" else _raw_spawn_anyio
                run = raw_run if name == "raw" else _corral_spawn
                samples.append(anyio.run(run, backend=backend))
            _guardian._guardian.disabled = False
            log(
                f"{backend} round {round_ + 1}/{ROUNDS}: {guarded[-1]:.0f} / {raw[-1]:.0f} / "
                f"{unguarded[-1]:.0f} proc/s (guarded / raw / unguarded)"
            )
        ratio = median(guarded) / median(raw)
        emit(
            benchmark=BENCHMARK,
            figure="spawn throughput with the guardian on: 400 x true, 16 at once",
            backend=backend,
            corral=round(median(guarded), 1),
            baseline=round(median(raw), 1),
            unit="processes/s",
            goal="ratio >= 1.0",
            met=ratio >= 1.0,
            corral_samples=guarded,
            baseline_samples=raw,
            unguarded=round(median(unguarded), 1),
            guarded_vs_unguarded=round(median(guarded) / median(unguarded), 3),
            baseline_is="raw trio.run_process / anyio.run_process + a CapacityLimiter",
        )


def main() -> None:
    directory = tempfile.mkdtemp(prefix="corral-bench-lifetimes-")
    starter = HarnessStarter()
    server: OpenSSHServer | None = None
    try:
        try:
            server = OpenSSHServer(Path(directory) / "sshd")
            server.start()
        except SSHServerUnavailable as error:
            log(f"SSH figures skipped: {error}")
            server = None
        bench_kill(starter, server)
        starter.close()
        bench_spawn()
    finally:
        starter.close()
        if server is not None:
            server.stop()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
