"""Helpers shared by the ``bench_*.py`` scripts.

Every benchmark measures corral side by side with a raw trio/anyio baseline in
the same run, alternating the two from round to round, and prints one JSON
line per figure on stdout (progress goes to stderr). The figures are medians
of the rounds, and ``ratio`` is always ``corral / baseline``.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

__all__ = [
    "BACKENDS",
    "PY",
    "compare",
    "count_procs",
    "emit",
    "kill_procs",
    "live_descendants",
    "log",
    "marker",
    "median",
    "now",
    "paired_ratio",
    "raise_nofile",
    "side_by_side",
    "zombie_children",
]

#: The Python running the benchmarks, for ``sys.executable -c`` children.
PY = sys.executable
#: The backends every two-backend figure is measured under, in this order.
BACKENDS = ("trio", "asyncio")

now = time.perf_counter

T = TypeVar("T")


def log(message: str) -> None:
    """Write a progress line to stderr (stdout is reserved for JSON lines)."""
    print(f"[{os.path.basename(sys.argv[0])}] {message}", file=sys.stderr, flush=True)


def median(samples: list[float]) -> float:
    """Return the median of *samples*."""
    return float(statistics.median(samples))


def _sig(value: float, digits: int = 4) -> float:
    """Round *value* to *digits* significant digits, for readable JSON."""
    return float(f"{value:.{digits}g}")


def side_by_side(
    rounds: int,
    corral: Callable[[], T],
    baseline: Callable[[], T],
    *,
    label: str = "",
    warmup: bool = True,
) -> tuple[list[T], list[T]]:
    """Run *corral* and *baseline* alternately for *rounds* rounds.

    The order flips every round so neither side always runs first (on a noisy
    machine the first of a pair is often luckier or unluckier). With *warmup*,
    one untimed call of each comes first. Returns the two lists of samples,
    whatever each call returns (a float, or a tuple of figures).
    """
    if warmup:
        corral()
        baseline()
    corral_samples: list[T] = []
    baseline_samples: list[T] = []
    for i in range(rounds):
        order = ((corral, corral_samples), (baseline, baseline_samples))
        for run, samples in order if i % 2 == 0 else order[::-1]:
            samples.append(run())
        log(
            f"{label} round {i + 1}/{rounds}: corral={_show(corral_samples[-1])} "
            f"baseline={_show(baseline_samples[-1])}"
        )
    return corral_samples, baseline_samples


def _show(sample: object) -> str:
    if isinstance(sample, float):
        return f"{sample:.4g}"
    if isinstance(sample, tuple):
        return "(" + ", ".join(_show(x) for x in sample) + ")"
    return str(sample)


def paired_ratio(corral: list[float], baseline: list[float]) -> float:
    """Median of the per-round ratios ``corral[i] / baseline[i]``.

    Each round runs the two back to back, so this cancels slow drifts in the
    machine's load better than the ratio of the two medians.
    """
    return median([c / b for c, b in zip(corral, baseline, strict=True)])


def emit(
    *,
    benchmark: str,
    figure: str,
    corral: float,
    baseline: float | None,
    unit: str,
    goal: str,
    met: bool,
    backend: str | None = None,
    ratio: float | None = None,
    corral_samples: list[float] | None = None,
    baseline_samples: list[float] | None = None,
    details: dict[str, object] | None = None,
    **extra: object,
) -> None:
    """Print one figure as one JSON line on stdout.

    ``ratio`` defaults to ``corral / baseline``. Samples, when given, are
    included (rounded) so the spread of the rounds can be judged. Further
    keys come from *details* and the other keyword arguments.
    """
    if ratio is None and baseline:
        ratio = corral / baseline
    record: dict[str, object] = {
        "benchmark": benchmark,
        "figure": figure,
        "backend": backend,
        "corral": _sig(corral),
        "baseline": None if baseline is None else _sig(baseline),
        "unit": unit,
        "ratio": None if ratio is None else _sig(ratio, 3),
        "goal": goal,
        "met": bool(met),
    }
    if corral_samples is not None:
        record["rounds"] = len(corral_samples)
        record["corral_samples"] = [_sig(x) for x in corral_samples]
    if baseline_samples is not None:
        record["baseline_samples"] = [_sig(x) for x in baseline_samples]
    record.update(details or {})
    record.update(extra)
    print(json.dumps(record), flush=True)


def compare(
    benchmark: str,
    backend: str,
    figure: str,
    rounds: int,
    ours_fn: Callable[[], float],
    base_fn: Callable[[], float],
    *,
    unit: str,
    goal: str = "informational",
    met: Callable[[float], bool] = lambda ratio: True,
    **extra: object,
) -> None:
    """Measure *ours_fn* and *base_fn* side by side and emit the figure.

    ``corral`` and ``baseline`` are the medians of the rounds; ``ratio`` is
    :func:`paired_ratio`, and ``met`` is *met* of it (an informational figure,
    the default, is always met). *extra* keys go into the JSON line as they are.
    """
    log(f"{figure}, under {backend}")
    ours, base = side_by_side(rounds, ours_fn, base_fn, label=backend)
    ratio = paired_ratio(ours, base)
    emit(
        benchmark=benchmark,
        figure=figure,
        backend=backend,
        corral=median(ours),
        baseline=median(base),
        unit=unit,
        goal=goal,
        met=met(ratio),
        ratio=ratio,
        corral_samples=ours,
        baseline_samples=base,
        details=extra,
    )


def marker(base: int) -> str:
    """Return a sleep duration unique to this process, e.g. ``"30.4711"``.

    Children sleeping for it are recognisable in ``/proc`` as ours (and not
    some other program's ``sleep 30``), even after they were reparented.
    """
    return f"{base}.{os.getpid()}"


def _processes() -> Iterator[tuple[int, bytes, int, bytes]]:
    """Yield ``(pid, state, ppid, cmdline)`` for every process in ``/proc``."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmdline = f.read()
        except (OSError, IndexError):
            continue
        yield int(name), fields[0], int(fields[1]), cmdline


def _matching(text: str) -> list[int]:
    needle = text.encode()
    me = os.getpid()
    return [
        pid
        for pid, state, _, cmdline in _processes()
        if pid != me and state != b"Z" and needle in cmdline
    ]


def count_procs(text: str) -> int:
    """Count live (non-zombie) processes whose command line contains *text*.

    Pass a :func:`marker` so that only this benchmark's children match.
    """
    return len(_matching(text))


def kill_procs(text: str) -> int:
    """SIGKILL, by pid, the live processes whose command line contains *text*.

    Returns how many were killed. Used after a baseline that leaves
    processes behind, so the next measurement starts clean.
    """
    pids = _matching(text)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return len(pids)


def live_descendants() -> int:
    """Count live (non-zombie) descendants of this process."""
    me = os.getpid()
    parents = {pid: ppid for pid, state, ppid, _ in _processes() if state != b"Z"}
    count = 0
    for pid in parents:
        ancestor = parents.get(pid)
        while ancestor is not None and ancestor > 1:
            if ancestor == me:
                count += 1
                break
            ancestor = parents.get(ancestor)
    return count


def zombie_children() -> int:
    """Count children of this process that exited but were not reaped."""
    me = os.getpid()
    return sum(1 for _, state, ppid, _ in _processes() if ppid == me and state == b"Z")


def raise_nofile() -> int:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft
