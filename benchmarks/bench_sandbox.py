"""Sandboxes: the local sandbox's overhead over what it is built on.

1. ``exec(["true"])`` p50 latency through ``sandbox().exec`` inside a sample
   with the local sandbox vs a bare ``corral.util.subprocess(["true"])``, in
   the same run, under both backends. Goal: corral / baseline <= 1.15.
2. A 50 MiB ``write_file`` + ``read_file`` round trip through ``sandbox()``
   vs ``anyio.Path.write_bytes`` + ``read_bytes`` of a temporary file
   (informational), under both backends.
3. Samples per second of an empty sample with the local sandbox vs an empty
   sample without a sandbox (informational), under both backends.
"""

from __future__ import annotations

import functools
import operator
import os
import tempfile

import anyio

import corral
from _common import BACKENDS, compare, median, now
from corral.util import sandbox, subprocess

EXECS = 200
EXEC_ROUNDS = 9
MIB = 1024 * 1024
PAYLOAD_MIB = 50
IO_ROUNDS = 5
SAMPLES = 300
SAMPLE_ROUNDS = 5
GOAL_RATIO = 1.15


def _p50_ms(latencies: list[float]) -> float:
    return median(latencies) * 1e3


async def _sandbox_exec() -> float:
    """p50 latency in ms of ``sandbox().exec(["true"])`` inside a local-sandbox sample."""
    latencies = []
    async with corral.task("bench", sandbox="local") as task, task.sample(1):
        env = sandbox()
        for _ in range(EXECS):
            started = now()
            await env.exec(["true"])
            latencies.append(now() - started)
    return _p50_ms(latencies)


async def _bare_subprocess() -> float:
    """p50 latency in ms of ``subprocess(["true"])``."""
    latencies = []
    for _ in range(EXECS):
        started = now()
        await subprocess(["true"])
        latencies.append(now() - started)
    return _p50_ms(latencies)


def bench_exec_latency() -> None:
    for backend in BACKENDS:
        compare(
            "sandbox",
            backend,
            'local sandbox exec(["true"]) p50 latency',
            EXEC_ROUNDS,
            functools.partial(anyio.run, _sandbox_exec, backend=backend),
            functools.partial(anyio.run, _bare_subprocess, backend=backend),
            unit="ms",
            goal=f"corral / baseline <= {GOAL_RATIO}",
            met=functools.partial(operator.ge, GOAL_RATIO),
            execs_per_round=EXECS,
            baseline_is='corral.util.subprocess(["true"])',
        )


def _payload() -> bytes:
    block = os.urandom(MIB)
    return block * PAYLOAD_MIB


async def _sandbox_round_trip(payload: bytes) -> float:
    """MiB/s of a write_file + read_file round trip of *payload* through ``sandbox()``."""
    async with corral.task("bench", sandbox="local") as task, task.sample(1):
        env = sandbox()
        started = now()
        await env.write_file("payload.bin", payload)
        data = await env.read_file("payload.bin", text=False)
        elapsed = now() - started
    assert data == payload
    return PAYLOAD_MIB / elapsed


async def _plain_round_trip(payload: bytes) -> float:
    """MiB/s of ``anyio.Path.write_bytes`` + ``read_bytes`` of *payload* on a temp file."""
    with tempfile.TemporaryDirectory(prefix="corral-bench-") as directory:
        path = anyio.Path(directory) / "payload.bin"
        started = now()
        await path.write_bytes(payload)
        data = await path.read_bytes()
        elapsed = now() - started
    assert data == payload
    return PAYLOAD_MIB / elapsed


def bench_file_round_trip() -> None:
    payload = _payload()
    for backend in BACKENDS:
        compare(
            "sandbox",
            backend,
            "50 MiB write_file + read_file round trip, local sandbox",
            IO_ROUNDS,
            functools.partial(anyio.run, _sandbox_round_trip, payload, backend=backend),
            functools.partial(anyio.run, _plain_round_trip, payload, backend=backend),
            unit="MiB/s (payload size / round-trip time; higher is better)",
            baseline_is="anyio.Path.write_bytes + read_bytes of a temporary file",
        )


async def _samples_per_second(sandbox_type: str | None) -> float:
    """Empty samples per second, one after another, with or without a sandbox."""
    async with corral.task("bench", sandbox=sandbox_type) as task:
        started = now()
        for i in range(SAMPLES):
            async with task.sample(i):
                pass
        return SAMPLES / (now() - started)


def bench_sample_rate() -> None:
    for backend in BACKENDS:
        compare(
            "sandbox",
            backend,
            "empty samples per second with a local sandbox",
            SAMPLE_ROUNDS,
            functools.partial(anyio.run, _samples_per_second, "local", backend=backend),
            functools.partial(anyio.run, _samples_per_second, None, backend=backend),
            unit="samples/s (higher is better)",
            samples_per_round=SAMPLES,
            baseline_is="the same empty sample without a sandbox",
        )


def main() -> None:
    bench_exec_latency()
    bench_file_round_trip()
    bench_sample_rate()


if __name__ == "__main__":
    main()
