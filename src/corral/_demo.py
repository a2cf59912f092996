"""``corral demo``: a short showcase of supervised subprocesses.

It runs, inside one task scope: a batch of ordinary commands behind the
task's subprocess limit, a flood of output kept to its last KiB, a command
that times out, one that ignores SIGTERM, and a batch of sleepers cancelled
at once; then it checks that no child of this process is left running.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, field

import anyio
import click

import corral
from corral.util import concurrency_status, subprocess

__all__ = ["run_demo"]

PY = sys.executable


@dataclass
class _Line:
    what: str
    outcome: str
    seconds: float
    ok: bool


@dataclass
class _Report:
    lines: list[_Line] = field(default_factory=list)

    def add(self, what: str, outcome: str, started: float, ok: bool) -> None:
        self.lines.append(_Line(what, outcome, time.monotonic() - started, ok))


def _live_children() -> int:
    """Count live (non-zombie) descendants of this process, from /proc."""
    me = os.getpid()
    parents: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != b"Z":
            parents[int(name)] = int(fields[1])
    count = 0
    for pid in parents:
        ancestor = parents.get(pid)
        while ancestor is not None and ancestor > 1:
            if ancestor == me:
                count += 1
                break
            ancestor = parents.get(ancestor)
    return count


async def _showcase(report: _Report) -> None:
    async with corral.task("demo", max_subprocesses=4, kill_grace=0.5) as task:
        started = time.monotonic()
        results: list[int] = []

        async def square(n: int) -> None:
            result = await subprocess([PY, "-c", f"print({n} * {n})"])
            results.append(int(result.stdout))

        async with anyio.create_task_group() as tg:
            for n in range(12):
                tg.start_soon(square, n)
        peak = task.statistics().max_subprocesses
        report.add(
            "12 commands, 4 at a time",
            f"sum of squares {sum(results)} (limit {peak})",
            started,
            sum(results) == sum(n * n for n in range(12)),
        )

        started = time.monotonic()
        flood = await subprocess(
            ["head", "-c", "50000000", "/dev/zero"], text=False, output_limit=1024
        )
        report.add(
            "50 MB of output, output_limit=1 KiB",
            f"kept {len(flood.stdout)} bytes",
            started,
            len(flood.stdout) == 1024,
        )

        started = time.monotonic()
        try:
            await subprocess(["sleep", "30"], timeout=0.3)
        except TimeoutError as exc:
            report.add("sleep 30, timeout 0.3 s", f"TimeoutError: {exc}", started, True)
        else:
            report.add("sleep 30, timeout 0.3 s", "no timeout", started, False)

        started = time.monotonic()
        ignores_term = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        ignores_term += "print('ready', flush=True); time.sleep(30)"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with contextlib.suppress(TimeoutError):
                await subprocess([PY, "-c", ignores_term], timeout=0.3)
        report.add(
            "SIGTERM ignored, timeout 0.3 s, grace 0.5 s",
            f"killed after the grace ({len(caught)} warning)",
            started,
            len(caught) == 1,
        )

        started = time.monotonic()
        with anyio.move_on_after(0.5):
            async with corral.task("sleepers", max_subprocesses=50) as sleepers:
                for _ in range(50):
                    sleepers.start_soon(subprocess, ["sleep", "30"])
        left = _live_children()
        report.add(
            "50 x sleep 30, cancelled after 0.5 s",
            f"{left} processes left",
            started,
            left == 0,
        )
        status = concurrency_status()
        report.add("limits after the run", repr(status), time.monotonic(), True)


def run_demo(backend: str) -> int:
    """Run the showcase under *backend*, print the summary, return an exit status."""
    report = _Report()
    started = time.monotonic()
    anyio.run(_showcase, report, backend=backend)
    total = time.monotonic() - started
    width = max(len(line.what) for line in report.lines)
    click.echo(f"corral {corral.__version__} demo under {backend}\n")
    for line in report.lines:
        mark = click.style("ok  ", fg="green") if line.ok else click.style("FAIL", fg="red")
        secs = f"{line.seconds:6.2f}s" if math.isfinite(line.seconds) else ""
        click.echo(f"  {mark} {line.what:<{width}}  {secs}  {line.outcome}")
    failed = sum(not line.ok for line in report.lines)
    click.echo(f"\n{len(report.lines) - failed} passed, {failed} failed in {total:.2f}s")
    return 1 if failed else 0
