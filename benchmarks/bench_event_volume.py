"""Sandbox event volume: one sample recording 100,000 sandbox execs, and its log.

inspect_ai#3136 saw one sample with 39,370 ``SandboxEvent``s take 12.6 GB to
load. Here one sample runs 100,000 ``sandbox().exec(["printf", ...])`` calls
on the in-memory sandbox (``MemorySandboxEnvironment``), through the sandbox
proxy as every sample's calls go: each is checked, traced (two trace records,
to a real trace file) and recorded as one ``SandboxEvent`` in the sample's
transcript. Then the sample's events are written out and read back.

Figures (goal: <= 200 MB of RSS growth for each; sizes are informational):

1. RSS growth of recording the 100,000 execs (from just before the first to
   just after the last).
2. Peak RSS growth of writing the sample's log, one event per line
   (``Transcript.write_jsonl``); baseline in the same run: the whole-document
   path (``Sample.log().write_json()``), measured in its own process.
3. The size of the log written each way.
4. Peak RSS growth of reading the log back, one line at a time
   (``Transcript.iter_jsonl``, counting the events); baseline:
   ``SampleLog.read_json`` of the whole-document file.
5. The size of the trace file (gzipped at exit), informational.

Each measurement runs in a fresh Python process (this script with
``--child``), so one measurement's peak (``ru_maxrss``) is not hidden by an
earlier one's; the recording figure is read from ``/proc/self/status``.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess as stdlib_subprocess
import sys
import tempfile
from pathlib import Path

import anyio

from _common import PY, emit, log

EXECS = 100_000
GOAL_MB = 200.0
MB = 1e6


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / MB
    raise RuntimeError("no VmRSS in /proc/self/status")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MB


async def _record_and_write(mode: str, execs: int, out: Path) -> dict[str, float]:
    import corral
    from corral.sandboxes import register_sandbox
    from corral.sandboxes.testing import MemorySandboxEnvironment
    from corral.util import sandbox

    register_sandbox("memory", MemorySandboxEnvironment, clobber=True)
    async with corral.task("volume", sandbox="memory") as task, task.sample(1) as sample:
        env = sandbox()
        await env.exec(["printf", "warm-up\n"])
        start = _rss_mb()
        for n in range(execs):
            await env.exec(["printf", f"line {n} of the output of one command\n"])
        recorded = _rss_mb()
        if mode == "jsonl":
            sample.transcript.write_jsonl(out)
        else:
            sample.log().write_json(out)
        peak = _peak_mb()
    return {
        "record_mb": recorded - start,
        "write_peak_mb": peak - start,
        "size_mb": out.stat().st_size / MB,
    }


def _read(mode: str, path: Path) -> dict[str, float]:
    from corral.util import SampleLog, Transcript

    start = _rss_mb()
    if mode == "jsonl":
        count = sum(1 for _ in Transcript.iter_jsonl(path))
    else:
        count = len(SampleLog.read_json(path).events)
    return {"read_peak_mb": _peak_mb() - start, "events": float(count)}


def child(action: str, mode: str, execs: int, path: str) -> None:
    if action == "write":
        figures = anyio.run(_record_and_write, mode, execs, Path(path), backend="trio")
    else:
        figures = _read(mode, Path(path))
    print(json.dumps(figures))


def _run_child(action: str, mode: str, execs: int, path: Path, trace: Path) -> dict[str, float]:
    env = {**os.environ, "CORRAL_TRACE_FILE": str(trace)}
    done = stdlib_subprocess.run(
        [PY, __file__, "--child", action, mode, str(execs), str(path)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    figures: dict[str, float] = json.loads(done.stdout.splitlines()[-1])
    return figures


def main() -> None:
    execs = int(os.environ.get("BENCH_EVENT_EXECS", EXECS))
    with tempfile.TemporaryDirectory(prefix="corral-bench-volume-") as scratch:
        where = Path(scratch)
        results: dict[str, dict[str, float]] = {}
        for mode in ("json", "jsonl"):  # the whole-document path first: the baseline
            log(f"{execs} execs in one sample, then its log written as {mode}")
            trace = where / f"trace-{mode}.log"
            out = where / f"events.{mode}"
            results[mode] = _run_child("write", mode, execs, out, trace)
            log(f"reading the {mode} log back")
            results[mode] |= _run_child("read", mode, execs, out, where / "trace-read.log")
            gz = trace.with_name(trace.name + ".gz")
            results[mode]["trace_mb"] = gz.stat().st_size / MB
    lines, whole = results["jsonl"], results["json"]
    details: dict[str, object] = {"execs": execs}
    emit(
        benchmark="event_volume",
        figure=f"RSS growth recording {execs} sandbox execs in one sample",
        corral=lines["record_mb"],
        baseline=None,
        unit="MB",
        goal=f"<= {GOAL_MB:.0f} MB",
        met=lines["record_mb"] <= GOAL_MB,
        details={**details, "in_the_other_process": whole["record_mb"]},
    )
    emit(
        benchmark="event_volume",
        figure="peak RSS growth, recording and then writing the log (JSON Lines vs write_json)",
        corral=lines["write_peak_mb"],
        baseline=whole["write_peak_mb"],
        unit="MB",
        goal=f"<= {GOAL_MB:.0f} MB",
        met=lines["write_peak_mb"] <= GOAL_MB,
        details=details,
    )
    emit(
        benchmark="event_volume",
        figure="size of the sample's log (JSON Lines vs one JSON document)",
        corral=lines["size_mb"],
        baseline=whole["size_mb"],
        unit="MB",
        goal="informational",
        met=True,
        details=details,
    )
    emit(
        benchmark="event_volume",
        figure="peak RSS growth reading the log back (iter_jsonl vs SampleLog.read_json)",
        corral=lines["read_peak_mb"],
        baseline=whole["read_peak_mb"],
        unit="MB",
        goal=f"<= {GOAL_MB:.0f} MB",
        met=lines["read_peak_mb"] <= GOAL_MB and lines["events"] == whole["events"],
        details={**details, "events_read": lines["events"]},
    )
    emit(
        benchmark="event_volume",
        figure=f"size of the trace file of {execs} execs (gzipped at exit)",
        corral=lines["trace_mb"],
        baseline=None,
        unit="MB",
        goal="informational",
        met=True,
        details=details,
    )


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
    else:
        main()
