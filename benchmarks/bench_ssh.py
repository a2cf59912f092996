"""SSH sandbox: the ``"ssh"`` provider's overhead over raw asyncssh.

Every figure runs against one real OpenSSH ``sshd`` on a loopback port
(:class:`~tests.support.sshd.OpenSSHServer`, started in a
temporary directory for the whole script and stopped at the end). The
baseline is always raw asyncssh on ONE connection under asyncio (run with
``asyncio.run``), set up before the clock starts; under trio the provider
runs asyncssh on a background asyncio loop thread, so the trio figures
include a thread hop per call.

The server logs in dedicated users (``corral-bench-ssh``, created if missing),
not the test suite's, so that it can run while a test session runs its own,
and allows 64 sessions per connection (``MaxSessions``; the provider still
opens at most its default ``max_sessions`` of 10 channels per connection):
at OpenSSH's default of 10, sshd, which frees a closed session's slot
lazily, refuses the baseline's channels now and then with 8 kept busy.

1. Sequential ``exec(["true"])`` p50 latency through ``sandbox().exec``
   inside an ssh-sandbox sample vs ``await conn.run("true")``; connection
   setup and a few warm-up calls excluded. Goal: corral / baseline <= 1.3
   under asyncio, <= 1.5 under trio. Then, informational, the same against
   ``conn.run("exec /bin/true")`` over AES-GCM: the shell's ``true`` is a
   builtin, while ``exec(["true"])`` runs the program (an ``execve`` on the
   server), and corral negotiates AES-GCM rather than asyncssh's default
   chacha20-poly1305 (cheaper for asyncssh to run).
2. Throughput (execs/s) of 8 concurrent workers each running sequential
   ``exec(["true"])`` in one sample vs 8 concurrent ``conn.run("true")``
   workers (8 channels on the one connection). Goal: corral / baseline >= 0.8.
   Then, informational, against ``conn.run("exec /bin/true")`` workers over AES-GCM.
3. A 50 MiB ``write_file`` + ``read_file(text=False)`` round trip vs the
   same through raw asyncssh SFTP (``sftp.open(path, "wb")`` /
   ``sftp.open(path, "rb")``), read-back checked. Goal: corral / baseline >= 0.8.
4. Cancel latency: ``exec(["sleep", "30.<pid>"])`` cancelled once the remote
   ``sleep`` runs; the time from the cancel to ``exec`` returning, and the
   test user's processes with that marker still alive when it returned and
   after the sample ended. Goal: <= 0.3 s and 0 left. Baseline: raw
   ``conn.create_process`` whose channel is closed (``process.close()``,
   which returns at once), which leaves the remote command running: the
   time is that of ``close()``, and what is left is counted right after it
   and 0.3 s after the connection closed (then killed, by PID).

Without root or ``/usr/sbin/sshd`` the server cannot start: one JSON line
with ``"skipped"`` is printed and the script exits 0.
"""

from __future__ import annotations

import asyncio
import functools
import json
import operator
import os
import shutil
import tempfile
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import anyio
import asyncssh
from tests.support.sshd import OpenSSHServer, SSHServerUnavailable

import corral
from _common import (
    BACKENDS,
    compare,
    emit,
    kill_procs,
    log,
    marker,
    median,
    now,
    side_by_side,
)
from corral.sandboxes._ssh._pool import ENCRYPTION_ALGS
from corral.util import sandbox

BENCHMARK = "ssh"
WARMUP_EXECS = 5
EXECS = 100
EXEC_ROUNDS = 7
LATENCY_GOALS = {"asyncio": 1.3, "trio": 1.5}
WORKERS = 8
EXECS_PER_WORKER = 40
CONCURRENT_ROUNDS = 5
THROUGHPUT_GOAL = 0.8
MIB = 1024 * 1024
PAYLOAD_MIB = 50
IO_ROUNDS = 5
CANCEL_ROUNDS = 5
#: Cancel no earlier than this after the exec started (and once the remote sleep runs).
CANCEL_AFTER = 0.2
CANCEL_GOAL_SECONDS = 0.3
#: Give up on a remote process that does not start (or a cancel that does not end) within this.
CAP = 30.0
POLL = 0.005

SLEEP = marker(30)
#: Users of the benchmark's own (not the test suite's), so that a concurrent test
#: session's sshd, which holds and kills the test users, neither blocks nor disturbs it.
USERNAME = "corral-bench-ssh"
OTHER_USERNAME = "corral-bench-other"
#: sshd's ``MaxSessions``, well above the :data:`WORKERS` channels of figure 2: sshd
#: frees a closed session's slot lazily, so a client that keeps 8 channels busy on
#: one connection is refused ("no more sessions") now and then at the default 10.
SERVER_MAX_SESSIONS = 64

T = TypeVar("T")

CancelSample = tuple[float, float, float]
"""(seconds from cancel to the call returning, marked processes left when it
returned, marked processes left after the sample / connection ended)."""


async def _connect(
    server: OpenSSHServer, *, like_for_like: bool = False
) -> asyncssh.SSHClientConnection:
    """One raw asyncssh connection to *server* (the baseline's), to use with ``async with``.

    With *like_for_like*, it negotiates the ciphers corral prefers (AES-GCM
    first) instead of asyncssh's defaults (chacha20-poly1305 first).
    """
    return await asyncssh.connect(
        server.host,
        server.port,
        username=server.username,
        client_keys=[str(server.client_key)],
        known_hosts=str(server.known_hosts),
        encryption_algs=list(ENCRYPTION_ALGS) if like_for_like else (),
    )


def _run_raw(fn: Callable[..., Coroutine[Any, Any, T]], *args: object) -> T:
    """Run a raw asyncssh baseline under asyncio (whatever backend corral is measured on)."""
    return asyncio.run(fn(*args))


def _ssh_task(server: OpenSSHServer) -> corral.Task:
    return corral.task("bench", sandbox=("ssh", server.sandbox_config()))


def _marked(server: OpenSSHServer, *, running_sleep: bool = False) -> list[int]:
    """PIDs of the test user's processes whose command line holds :data:`SLEEP`.

    With *running_sleep*, only those that already are ``sleep`` itself (the
    remote shell has exec'ed it), not a shell whose script mentions it.
    """
    needle = SLEEP.encode()
    found = []
    for pid in server.processes_of():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        argv = cmdline.split(b"\0")
        if needle not in cmdline:
            continue
        if running_sleep and os.path.basename(argv[0]) != b"sleep":
            continue
        found.append(pid)
    return found


async def _remote_sleep_started(server: OpenSSHServer, since: float) -> None:
    """Return once the remote ``sleep`` runs and :data:`CANCEL_AFTER` has passed since *since*."""
    with anyio.fail_after(CAP):
        while True:
            if _marked(server, running_sleep=True):
                break
            await anyio.sleep(POLL)
    await anyio.sleep(max(0.0, since + CANCEL_AFTER - now()))


# -- 1. sequential exec latency -----------------------------------------------------


#: The raw command that does what ``exec(["true"])`` does: run the binary.
LIKE_FOR_LIKE = "exec /bin/true"


def _p50_ms(latencies: list[float]) -> float:
    return median(latencies) * 1e3


async def _corral_exec_latency(server: OpenSSHServer) -> float:
    """p50 latency in ms of ``sandbox().exec(["true"])`` inside an ssh-sandbox sample."""
    latencies = []
    async with _ssh_task(server) as task, task.sample(1):
        env = sandbox()
        for _ in range(WARMUP_EXECS):
            await env.exec(["true"])
        for _ in range(EXECS):
            started = now()
            result = await env.exec(["true"])
            latencies.append(now() - started)
            assert result.success, result
    return _p50_ms(latencies)


async def _raw_exec_latency(server: OpenSSHServer, like_for_like: bool = False) -> float:
    """p50 latency in ms of ``conn.run("true")`` on one connection (see :func:`_like_for_like`)."""
    command = LIKE_FOR_LIKE if like_for_like else "true"
    latencies = []
    async with await _connect(server, like_for_like=like_for_like) as conn:
        for _ in range(WARMUP_EXECS):
            await conn.run(command)
        for _ in range(EXECS):
            started = now()
            result = await conn.run(command)
            latencies.append(now() - started)
            assert result.exit_status == 0, result
    return _p50_ms(latencies)


def bench_exec_latency(server: OpenSSHServer) -> None:
    for backend in BACKENDS:
        goal = LATENCY_GOALS[backend]
        ours = functools.partial(anyio.run, _corral_exec_latency, server, backend=backend)
        compare(
            BENCHMARK,
            backend,
            'ssh sandbox exec(["true"]) p50 latency, sequential',
            EXEC_ROUNDS,
            ours,
            functools.partial(_run_raw, _raw_exec_latency, server),
            unit="ms",
            goal=f"corral / baseline <= {goal}",
            met=functools.partial(operator.ge, goal),
            execs_per_round=EXECS,
            baseline_is='raw asyncssh conn.run("true") on one connection under asyncio',
        )
        _like_for_like(
            backend,
            'ssh sandbox exec(["true"]) p50 latency, sequential, like for like',
            EXEC_ROUNDS,
            ours,
            functools.partial(_run_raw, _raw_exec_latency, server, True),
            "ms",
        )


# -- 2. concurrent exec throughput --------------------------------------------------


async def _corral_exec_throughput(server: OpenSSHServer) -> float:
    """Execs per second of :data:`WORKERS` concurrent workers in one ssh-sandbox sample."""
    async with _ssh_task(server) as task, task.sample(1):
        env = sandbox()
        for _ in range(WARMUP_EXECS):
            await env.exec(["true"])

        async def worker() -> None:
            for _ in range(EXECS_PER_WORKER):
                result = await env.exec(["true"])
                assert result.success, result

        started = now()
        async with anyio.create_task_group() as tg:
            for _ in range(WORKERS):
                tg.start_soon(worker)
        elapsed = now() - started
    return WORKERS * EXECS_PER_WORKER / elapsed


async def _raw_exec_throughput(server: OpenSSHServer, like_for_like: bool = False) -> float:
    """Execs per second of :data:`WORKERS` concurrent ``conn.run("true")`` workers."""
    command = LIKE_FOR_LIKE if like_for_like else "true"
    async with await _connect(server, like_for_like=like_for_like) as conn:
        for _ in range(WARMUP_EXECS):
            await conn.run(command)

        async def worker() -> None:
            for _ in range(EXECS_PER_WORKER):
                result = await conn.run(command)
                assert result.exit_status == 0, result

        started = now()
        async with asyncio.TaskGroup() as tg:
            for _ in range(WORKERS):
                tg.create_task(worker())
        elapsed = now() - started
    return WORKERS * EXECS_PER_WORKER / elapsed


def bench_exec_throughput(server: OpenSSHServer) -> None:
    for backend in BACKENDS:
        ours = functools.partial(anyio.run, _corral_exec_throughput, server, backend=backend)
        compare(
            BENCHMARK,
            backend,
            f'ssh sandbox exec(["true"]) throughput, {WORKERS} concurrent workers',
            CONCURRENT_ROUNDS,
            ours,
            functools.partial(_run_raw, _raw_exec_throughput, server),
            unit="execs/s (higher is better)",
            goal=f"corral / baseline >= {THROUGHPUT_GOAL}",
            met=lambda ratio: ratio >= THROUGHPUT_GOAL,
            execs_per_round=WORKERS * EXECS_PER_WORKER,
            server_max_sessions=SERVER_MAX_SESSIONS,
            baseline_is=(
                f'{WORKERS} concurrent raw asyncssh conn.run("true") workers on one '
                "connection under asyncio"
            ),
        )
        _like_for_like(
            backend,
            f'ssh sandbox exec(["true"]) throughput, {WORKERS} concurrent workers, like for like',
            CONCURRENT_ROUNDS,
            ours,
            functools.partial(_run_raw, _raw_exec_throughput, server, True),
            "execs/s (higher is better)",
        )


def _like_for_like(
    backend: str,
    figure: str,
    rounds: int,
    ours_fn: Callable[[], float],
    base_fn: Callable[[], float],
    unit: str,
) -> None:
    """An informational figure whose raw baseline does what corral does on the wire and server.

    ``conn.run("true")`` runs the login shell's builtin, while
    ``exec(["true"])`` must run the program (arguments are never given to a
    shell to interpret), which costs an ``execve`` on the server; and corral
    negotiates AES-GCM, cheaper for asyncssh than its default chacha20. The
    like-for-like baseline runs ``exec /bin/true`` over AES-GCM, so the ratio
    is what corral's own layers cost.
    """
    compare(
        BENCHMARK,
        backend,
        figure,
        rounds,
        ours_fn,
        base_fn,
        unit=unit,
        baseline_is=f"raw asyncssh conn.run({LIKE_FOR_LIKE!r}) over AES-GCM under asyncio",
    )


# -- 3. file round trip -------------------------------------------------------------


def _payload() -> bytes:
    return os.urandom(MIB) * PAYLOAD_MIB


async def _corral_round_trip(server: OpenSSHServer, payload: bytes) -> float:
    """MiB/s of a write_file + read_file round trip of *payload* through ``sandbox()``."""
    async with _ssh_task(server) as task, task.sample(1):
        env = sandbox()
        await env.write_file("warmup.txt", "x")  # starts the SFTP client
        started = now()
        await env.write_file("payload.bin", payload)
        data = await env.read_file("payload.bin", text=False)
        elapsed = now() - started
    assert data == payload, "read_file returned other bytes than written"
    return PAYLOAD_MIB / elapsed


async def _raw_round_trip(server: OpenSSHServer, payload: bytes) -> float:
    """MiB/s of the same round trip through raw asyncssh SFTP on one connection."""
    path = f"/tmp/corral-bench-ssh-{os.getpid()}.bin"
    async with await _connect(server) as conn, conn.start_sftp_client() as sftp:
        try:
            started = now()
            async with sftp.open(path, "wb") as f:
                await f.write(payload)
            async with sftp.open(path, "rb") as f:
                data: bytes = await f.read()
            elapsed = now() - started
        finally:
            await sftp.remove(path)
    assert data == payload, "SFTP read returned other bytes than written"
    return PAYLOAD_MIB / elapsed


def bench_file_round_trip(server: OpenSSHServer) -> None:
    payload = _payload()
    for backend in BACKENDS:
        compare(
            BENCHMARK,
            backend,
            f"{PAYLOAD_MIB} MiB write_file + read_file round trip, ssh sandbox",
            IO_ROUNDS,
            functools.partial(anyio.run, _corral_round_trip, server, payload, backend=backend),
            functools.partial(_run_raw, _raw_round_trip, server, payload),
            unit="MiB/s (payload size / round-trip time; higher is better)",
            goal=f"corral / baseline >= {THROUGHPUT_GOAL}",
            met=lambda ratio: ratio >= THROUGHPUT_GOAL,
            baseline_is=(
                "raw asyncssh SFTP on one connection under asyncio: "
                'sftp.open(path, "wb").write + sftp.open(path, "rb").read'
            ),
        )


# -- 4. cancel latency --------------------------------------------------------------


async def _corral_cancel(server: OpenSSHServer) -> CancelSample:
    """Cancel a running remote ``sleep`` exec; time until ``exec`` returned, and leftovers."""
    returned = 0.0
    left_at_return = 0
    async with _ssh_task(server) as task, task.sample(1):
        env = sandbox()
        scope = anyio.CancelScope()

        async def sleeper() -> None:
            nonlocal returned, left_at_return
            with scope:
                await env.exec(["sleep", SLEEP])
            returned = now()
            left_at_return = len(_marked(server))

        with anyio.fail_after(CAP):
            async with anyio.create_task_group() as tg:
                begun = now()
                tg.start_soon(sleeper)
                await _remote_sleep_started(server, begun)
                cancelled = now()
                scope.cancel()
        assert scope.cancelled_caught, "the exec returned before it was cancelled"
    return returned - cancelled, float(left_at_return), float(len(_marked(server)))


async def _raw_cancel(server: OpenSSHServer) -> CancelSample:
    """Close the channel of a running raw asyncssh ``sleep``; time it, count what is left.

    ``process.close()`` returns at once, but the remote command keeps running
    (sshd does not signal a command without a terminal when its channel or
    connection closes; nor does it finish closing the channel before the
    command exits, so ``wait_closed()`` would block for the whole sleep and is
    not awaited). What is left is counted right after ``close()``, and again
    :data:`CANCEL_GOAL_SECONDS` after the connection was closed.
    """
    async with await _connect(server) as conn:
        begun = now()
        process = await conn.create_process(f"sleep {SLEEP}")
        await _remote_sleep_started(server, begun)
        cancelled = now()
        process.close()
        elapsed = now() - cancelled
        left_at_return = len(_marked(server))
    await asyncio.sleep(CANCEL_GOAL_SECONDS)
    return elapsed, float(left_at_return), float(len(_marked(server)))


def bench_cancel(server: OpenSSHServer) -> None:
    for backend in BACKENDS:

        def run_corral(backend: str = backend) -> CancelSample:
            try:
                return anyio.run(_corral_cancel, server, backend=backend)
            finally:
                if killed := kill_procs(SLEEP):
                    log(f"killed {killed} remote sleep(s) left by corral under {backend}")

        def run_baseline() -> CancelSample:
            try:
                return _run_raw(_raw_cancel, server)
            finally:
                kill_procs(SLEEP)  # expected: closing a channel leaves the command running

        log(f"cancel a remote sleep, corral under {backend}")
        ours, base = side_by_side(
            CANCEL_ROUNDS, run_corral, run_baseline, label=backend, warmup=False
        )
        seconds = median([s[0] for s in ours])
        left_at_return = int(sum(s[1] for s in ours))
        left = int(sum(s[2] for s in ours))
        emit(
            benchmark=BENCHMARK,
            figure="cancel a running remote sleep exec: cancel -> exec returned",
            backend=backend,
            corral=seconds,
            baseline=median([s[0] for s in base]),
            unit="s",
            goal=(
                f"corral <= {CANCEL_GOAL_SECONDS:g} s, "
                "0 left when exec returned and after the sample"
            ),
            met=seconds <= CANCEL_GOAL_SECONDS and left_at_return == 0 and left == 0,
            corral_samples=[s[0] for s in ours],
            baseline_samples=[s[0] for s in base],
            corral_left_at_return=left_at_return,
            corral_left=left,
            baseline_left_at_return=int(sum(s[1] for s in base)),
            baseline_left=int(sum(s[2] for s in base)),
            baseline_is=(
                'raw asyncssh conn.create_process("sleep ...") under asyncio, channel '
                "closed with process.close(); left (the remote sh -c and its sleep) counted "
                f"right after it and {CANCEL_GOAL_SECONDS:g} s after the connection closed"
            ),
        )


# -- main ---------------------------------------------------------------------------


def main() -> None:
    directory = tempfile.mkdtemp(prefix="corral-bench-ssh-")
    try:
        server = OpenSSHServer(
            Path(directory) / "sshd",
            username=USERNAME,
            other_username=OTHER_USERNAME,
            max_sessions=SERVER_MAX_SESSIONS,
        )
        try:
            server.start()
        except SSHServerUnavailable as error:
            reason = str(error)
            log("!" * 72)
            log(f"SKIPPED: the SSH benchmark cannot start sshd: {reason}")
            log("!" * 72)
            print(json.dumps({"benchmark": BENCHMARK, "skipped": reason}), flush=True)
            return
        with server:  # already started; stops sshd and everything it ran at the end
            log(f"sshd listening on {server.host}:{server.port}")
            bench_exec_latency(server)
            bench_exec_throughput(server)
            bench_file_round_trip(server)
            bench_cancel(server)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
