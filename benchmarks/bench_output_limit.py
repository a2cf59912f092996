"""``output_limit``: a child writing 300 MB, of which only the last 1 MiB is kept.

corral: ``subprocess(["head", "-c", "300000000", "/dev/zero"], text=False,
output_limit=1048576)``. Baseline in the same run: the raw backend reading the
same stream from a pipe and discarding each chunk (trio:
``trio.lowlevel.open_process(..., stdout=PIPE)`` and a ``receive_some()``
loop; asyncio: ``anyio.open_process`` and a ``receive()`` loop).

Two figures: throughput (bytes/s, goal >= 1 GB/s, exactly 1 MiB kept), under
both backends, and peak RSS growth (goal <= 8 MiB). Each measurement runs in
a fresh Python process (this script with ``--child``), so the peak RSS of
one measurement is not hidden by what an earlier one already reached: the
child warms the code path up on a small output, reads ``ru_maxrss``, runs
the big one, and reads ``ru_maxrss`` again.
"""

from __future__ import annotations

import json
import resource
import subprocess as stdlib_subprocess
import sys

import anyio
import trio

from _common import BACKENDS, PY, emit, log, median, now, paired_ratio, side_by_side
from corral.util import subprocess

TOTAL = 300_000_000
LIMIT = 1024 * 1024
ROUNDS = 3
GOAL_BYTES_PER_S = 1e9
GOAL_RSS_MIB = 8.0


def _argv(size: int) -> list[str]:
    return ["head", "-c", str(size), "/dev/zero"]


async def corral_read(size: int) -> int:
    """Run the command through corral; return how many bytes were kept."""
    result = await subprocess(_argv(size), text=False, output_limit=LIMIT)
    assert result.success, result
    kept = result.stdout
    assert kept == bytes(len(kept)), "kept output is not the child's zeros"
    return len(kept)


async def trio_read(size: int) -> int:
    """Read the command's stdout with raw trio, discarding it; return bytes read."""
    process = await trio.lowlevel.open_process(_argv(size), stdout=stdlib_subprocess.PIPE)
    assert process.stdout is not None
    total = 0
    async with process.stdout:
        while chunk := await process.stdout.receive_some():
            total += len(chunk)
    assert await process.wait() == 0
    return total


async def anyio_read(size: int) -> int:
    """Read the command's stdout with raw anyio, discarding it; return bytes read."""
    async with await anyio.open_process(
        _argv(size), stdin=stdlib_subprocess.DEVNULL, stderr=stdlib_subprocess.DEVNULL
    ) as process:
        assert process.stdout is not None
        total = 0
        try:
            while True:
                total += len(await process.stdout.receive())
        except anyio.EndOfStream:
            pass
        await process.wait()
    assert process.returncode == 0
    return total


async def _child_main(which: str) -> dict[str, float]:
    read = {"corral": corral_read, "trio": trio_read, "anyio": anyio_read}[which]
    await read(4 * LIMIT)  # warm up imports, caches and the allocator
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = now()
    got = await read(TOTAL)
    seconds = now() - started
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": seconds, "bytes": float(got), "rss_growth_kib": float(after - before)}


def child(which: str, backend: str) -> None:
    """Entry point of the fresh process: print one JSON object on stdout."""
    if which == "trio":
        figures = trio.run(_child_main, which)
    else:
        figures = anyio.run(_child_main, which, backend=backend)
    print(json.dumps(figures))


Sample = tuple[float, float, float]
"""(bytes per second, bytes kept or read, RSS growth in MiB)."""


def in_fresh_process(which: str, backend: str) -> Sample:
    done = stdlib_subprocess.run(
        [PY, __file__, "--child", which, backend],
        check=True,
        stdout=stdlib_subprocess.PIPE,
        timeout=120,
    )
    figures = json.loads(done.stdout)
    return (
        TOTAL / figures["seconds"],
        figures["bytes"],
        figures["rss_growth_kib"] / 1024,
    )


def main() -> None:
    for backend in BACKENDS:
        raw = "trio" if backend == "trio" else "anyio"

        def run_corral(backend: str = backend) -> Sample:
            return in_fresh_process("corral", backend)

        def run_baseline(backend: str = backend, raw: str = raw) -> Sample:
            return in_fresh_process(raw, backend)

        log(f"output_limit, {backend}")
        ours, theirs = side_by_side(ROUNDS, run_corral, run_baseline, label=backend, warmup=False)
        rate = median([s[0] for s in ours])
        base_rate = median([s[0] for s in theirs])
        kept = {int(s[1]) for s in ours}
        emit(
            benchmark="output_limit",
            figure=f"output_limit throughput: head -c {TOTAL} /dev/zero, output_limit={LIMIT}",
            backend=backend,
            corral=rate / 1e6,
            baseline=base_rate / 1e6,
            unit="MB/s",
            goal=f"corral >= {GOAL_BYTES_PER_S / 1e6:g} MB/s, exactly {LIMIT} bytes kept",
            met=rate >= GOAL_BYTES_PER_S and kept == {LIMIT},
            corral_samples=[s[0] / 1e6 for s in ours],
            baseline_samples=[s[0] / 1e6 for s in theirs],
            paired_ratio=round(paired_ratio([s[0] for s in ours], [s[0] for s in theirs]), 3),
            corral_kept_bytes=sorted(kept),
            baseline_is=(
                "raw trio.lowlevel.open_process + receive_some() loop, discarding"
                if raw == "trio"
                else "raw anyio.open_process + receive() loop, discarding"
            ),
        )
        rss = median([s[2] for s in ours])
        base_rss = median([s[2] for s in theirs])
        emit(
            benchmark="output_limit",
            figure=f"output_limit peak RSS growth: {TOTAL} bytes through output_limit={LIMIT}",
            backend=backend,
            corral=rss,
            baseline=base_rss,
            unit="MiB",
            goal=f"corral <= {GOAL_RSS_MIB:g} MiB",
            met=max(s[2] for s in ours) <= GOAL_RSS_MIB,
            corral_samples=[s[2] for s in ours],
            baseline_samples=[s[2] for s in theirs],
            measured_in="a fresh Python process per sample (ru_maxrss after - before)",
        )


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
    else:
        main()
