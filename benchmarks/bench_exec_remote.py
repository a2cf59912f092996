"""Streaming ``exec_remote``: event latency, throughput and interactive round trips.

Each figure runs corral's native ``exec_remote`` (through ``sandbox()`` in a
sample of the ``"local"`` or ``"ssh"`` sandbox) side by side with a raw
baseline in the same run:

* local: a raw anyio child process (``anyio.open_process``) under the same
  backend, read with ``receive()`` and written with ``send()``;
* ssh: raw asyncssh on one connection under asyncio (``asyncio.run``),
  ``conn.create_process`` read with ``stdout.read()``, against the same
  OpenSSH ``sshd`` on loopback (users ``corral-bench-ssh``/``-other``, as
  ``bench_ssh.py``).

1. Event latency: the command prints ``time.monotonic()`` after a quiet
   second, :data:`LINES` times; the latency is the harness's
   ``time.monotonic()`` when the event arrives minus the printed one (one
   clock: the ssh server runs on this machine). p50 in ms. Goal: <= 5 ms
   locally, <= 10 ms over SSH (inspect_ai's polling design: up to 5 s, its
   ``MIN_POLL_INTERVAL``).
2. Throughput: 100 MiB of stdout (``head -c``) through the event iterator,
   vs ``exec`` of the same command (output limit raised to hold it) in the
   same sample. Goal: iterator / exec throughput >= 0.8 (ratio of times
   <= 1.25).
3. Interactive round trip: a line written to ``cat``'s stdin and read back,
   :data:`ROUND_TRIPS` times; p50 in ms. Goal: <= 1 ms locally; over SSH
   <= 1.5 x the raw asyncssh channel's.

Without root or ``/usr/sbin/sshd`` the ssh figures print one ``"skipped"`` line.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import asyncssh
from tests.support.sshd import OpenSSHServer, SSHServerUnavailable

import corral
from _common import BACKENDS, compare, emit, log, median, now, paired_ratio, side_by_side
from corral.sandboxes._output_limits import override_sandbox_output_limit
from corral.util import ExecCompleted, ExecRemoteStreamingOptions, ExecStdout, sandbox

BENCHMARK = "exec_remote"
LINES = 5
LATENCY_GOALS_MS = {"local": 5.0, "ssh": 10.0}
MIB = 1024 * 1024
VOLUME = 100 * MIB
VOLUME_ROUNDS = 5
THROUGHPUT_GOAL = 0.8
ROUND_TRIPS = 300
RTT_ROUNDS = 3
RTT_GOAL_LOCAL_MS = 1.0
RTT_GOAL_SSH_RATIO = 1.5
Spec = str | tuple[str, Any]
USERNAME = "corral-bench-ssh"
OTHER_USERNAME = "corral-bench-other"

#: Prints time.monotonic() after each quiet second.
TICKER = (
    "import sys, time\n"
    f"for _ in range({LINES}):\n"
    "    time.sleep(1)\n"
    "    sys.stdout.write(repr(time.monotonic()) + '\\n'); sys.stdout.flush()\n"
)


def _spec(provider: str, server: OpenSSHServer | None) -> Spec:
    if provider == "local":
        return "local"
    assert server is not None
    return ("ssh", server.sandbox_config())


def _latencies(lines: str, arrived: list[float]) -> list[float]:
    printed = [float(x) for x in lines.split()]
    assert len(printed) == len(arrived) == LINES, (printed, arrived)
    return [(a - p) * 1e3 for a, p in zip(arrived, printed, strict=True)]


# -- 1. event latency ---------------------------------------------------------------


async def _corral_latency(spec: Spec) -> float:
    arrived: list[float] = []
    text = []
    async with corral.task("bench", sandbox=spec) as task, task.sample(1):
        process = await sandbox().exec_remote(["python3", "-c", TICKER])
        async for event in process:
            if isinstance(event, ExecStdout):
                for _ in range(event.data.count("\n")):
                    arrived.append(time.monotonic())
                text.append(event.data)
    return median(_latencies("".join(text), arrived))


async def _local_raw_latency() -> float:
    arrived: list[float] = []
    text = []
    async with await anyio.open_process(["python3", "-c", TICKER]) as process:
        assert process.stdout is not None
        async for data in process.stdout:
            arrived.extend(time.monotonic() for _ in range(data.count(b"\n")))
            text.append(data.decode())
    return median(_latencies("".join(text), arrived))


async def _ssh_raw_latency(server: OpenSSHServer) -> float:
    arrived: list[float] = []
    text = []
    async with await _connect(server) as conn:
        process = await conn.create_process(f"exec python3 -c {_q(TICKER)}")
        while data := await process.stdout.read(65536):
            arrived.extend(time.monotonic() for _ in range(data.count("\n")))
            text.append(data)
        await process.wait()
    return median(_latencies("".join(text), arrived))


def bench_latency(server: OpenSSHServer | None) -> None:
    for provider in ("local", "ssh") if server else ("local",):
        for backend in BACKENDS:
            log(f"event latency, {provider}, under {backend}")
            ours = anyio.run(_corral_latency, _spec(provider, server), backend=backend)
            if provider == "local":
                base = anyio.run(_local_raw_latency, backend=backend)
            else:
                assert server is not None
                base = asyncio.run(_ssh_raw_latency(server))
            goal = LATENCY_GOALS_MS[provider]
            emit(
                benchmark=BENCHMARK,
                figure=f"event latency after a quiet second, p50 ({provider})",
                backend=backend,
                corral=ours,
                baseline=base,
                unit="ms",
                goal=f"<= {goal:g} ms (inspect_ai's polling: up to 5000 ms)",
                met=ours <= goal,
            )


# -- 2. throughput ------------------------------------------------------------------


def _volume_command() -> list[str]:
    return ["head", "-c", str(VOLUME), "/dev/zero"]


async def _corral_volume(spec: Spec, streamed: bool) -> float:
    async with corral.task("bench", sandbox=spec) as task, task.sample(1):
        env = sandbox()
        started = now()
        if streamed:
            total = 0
            process = await env.exec_remote(_volume_command())
            async for event in process:
                if isinstance(event, ExecStdout):
                    total += len(event.data)
                else:
                    assert event == ExecCompleted(0), event
        else:
            with override_sandbox_output_limit(2 * VOLUME, "exec"):
                result = await env.exec(_volume_command())
            total = len(result.stdout)
        elapsed = now() - started
    assert total == VOLUME, total
    return elapsed


def bench_throughput(server: OpenSSHServer | None) -> None:
    for provider in ("local", "ssh") if server else ("local",):
        spec = _spec(provider, server)
        for backend in BACKENDS:

            def streamed(spec: Spec = spec, backend: str = backend) -> float:
                return anyio.run(_corral_volume, spec, True, backend=backend)

            def whole(spec: Spec = spec, backend: str = backend) -> float:
                return anyio.run(_corral_volume, spec, False, backend=backend)

            compare(
                BENCHMARK,
                backend,
                f"100 MiB of stdout: exec_remote iterator time / exec time ({provider})",
                VOLUME_ROUNDS,
                streamed,
                whole,
                unit="s",
                goal=f"throughput >= {THROUGHPUT_GOAL:g} x exec (time ratio <= 1.25)",
                met=lambda ratio: 1 / ratio >= THROUGHPUT_GOAL,
            )


# -- 3. interactive round trip ------------------------------------------------------


async def _corral_rtt(spec: Spec) -> float:
    times = []
    async with corral.task("bench", sandbox=spec) as task, task.sample(1):
        process = await sandbox().exec_remote(["cat"], ExecRemoteStreamingOptions(stdin_open=True))
        events = process.__aiter__()
        for i in range(ROUND_TRIPS):
            line = f"line {i}\n"
            started = now()
            await process.write_stdin(line)
            got = ""
            while got != line:
                event = await events.__anext__()
                assert isinstance(event, ExecStdout), event
                got += event.data
            times.append(now() - started)
        await process.close_stdin()
        assert await events.__anext__() == ExecCompleted(0)
    return median(times) * 1e3


async def _local_raw_rtt() -> float:
    times = []
    async with await anyio.open_process(["cat"]) as process:
        assert process.stdin is not None
        assert process.stdout is not None
        for i in range(ROUND_TRIPS):
            line = f"line {i}\n".encode()
            started = now()
            await process.stdin.send(line)
            got = b""
            while got != line:
                got += await process.stdout.receive()
            times.append(now() - started)
        await process.stdin.aclose()
    return median(times) * 1e3


async def _ssh_raw_rtt(server: OpenSSHServer) -> float:
    times = []
    async with await _connect(server) as conn:
        process = await conn.create_process("exec cat")
        for i in range(ROUND_TRIPS):
            line = f"line {i}\n"
            started = now()
            process.stdin.write(line)
            got = ""
            while got != line:
                got += await process.stdout.read(65536)
            times.append(now() - started)
        process.stdin.write_eof()
        await process.wait()
    return median(times) * 1e3


def bench_rtt(server: OpenSSHServer | None) -> None:
    for provider in ("local", "ssh") if server else ("local",):
        spec = _spec(provider, server)
        for backend in BACKENDS:
            log(f"interactive round trip, {provider}, under {backend}")

            def ours(spec: Spec = spec, backend: str = backend) -> float:
                return anyio.run(_corral_rtt, spec, backend=backend)

            def base(provider: str = provider, backend: str = backend) -> float:
                if provider == "local":
                    return anyio.run(_local_raw_rtt, backend=backend)
                assert server is not None
                return asyncio.run(_ssh_raw_rtt(server))

            ours_ms, base_ms = side_by_side(RTT_ROUNDS, ours, base, label=backend)
            ratio = paired_ratio(ours_ms, base_ms)
            if provider == "local":
                goal = f"corral p50 <= {RTT_GOAL_LOCAL_MS:g} ms"
                met = median(ours_ms) <= RTT_GOAL_LOCAL_MS
            else:
                goal = f"corral / raw asyncssh <= {RTT_GOAL_SSH_RATIO:g}"
                met = ratio <= RTT_GOAL_SSH_RATIO
            emit(
                benchmark=BENCHMARK,
                figure=f"interactive round trip through cat, p50 ({provider})",
                backend=backend,
                corral=median(ours_ms),
                baseline=median(base_ms),
                unit="ms",
                goal=goal,
                met=met,
                ratio=ratio,
                corral_samples=ours_ms,
                baseline_samples=base_ms,
            )


# -- the server ---------------------------------------------------------------------


def _q(text: str) -> str:
    import shlex

    return shlex.quote(text)


async def _connect(server: OpenSSHServer) -> asyncssh.SSHClientConnection:
    return await asyncssh.connect(
        server.host,
        server.port,
        username=server.username,
        client_keys=[str(server.client_key)],
        known_hosts=str(server.known_hosts),
    )


def main() -> None:
    directory = tempfile.mkdtemp(prefix="corral-bench-exec-remote-")
    try:
        server: OpenSSHServer | None = OpenSSHServer(
            Path(directory) / "sshd", username=USERNAME, other_username=OTHER_USERNAME
        )
        assert server is not None
        try:
            server.start()
        except SSHServerUnavailable as error:
            log(f"SKIPPED (ssh figures): cannot start sshd: {error}")
            print(json.dumps({"benchmark": BENCHMARK, "skipped": str(error)}), flush=True)
            server = None
        try:
            bench_latency(server)
            bench_throughput(server)
            bench_rtt(server)
        finally:
            if server is not None:
                server.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
