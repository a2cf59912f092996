"""Tracing: what a traced action and a trace message cost with the trace file installed.

1. ``trace_action`` enter+exit (two records) with the file handler installed
   (``CORRAL_TRACE_FILE`` in a temporary directory), vs a plain ``logging``
   logger with a ``logging.FileHandler`` and the default ``Formatter`` logging
   the same two records (same messages, same extra fields), in the same run.
   Goal: corral <= 15 us per action (inspect_ai 0.3.285 measured 36 us on this
   kind of machine).
2. ``trace_message`` (one record), vs the same plain logger logging one record.
   Goal: corral <= 8 us (inspect_ai: 13 us).
3. ``trace_action`` on a logger not enabled for TRACE, vs
   ``contextlib.nullcontext()`` (informational: the price of tracing that is off).

Both sides write real files; corral's flusher thread runs as it would in use.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from _common import emit, log, median, now, paired_ratio, side_by_side

ACTIONS = 10_000
ROUNDS = 9
TRACE = 13


def _corral_actions(logger: logging.Logger) -> float:
    from corral.util import trace_action

    started = now()
    for _ in range(ACTIONS):
        with trace_action(logger, "Subprocess", "run %s", "ls -la"):
            pass
    return (now() - started) / ACTIONS * 1e6


def _logging_actions(logger: logging.Logger) -> float:
    started = now()
    for i in range(ACTIONS):
        fields = {
            "action": "Subprocess",
            "detail": "run ls -la",
            "event": "enter",
            "trace_id": f"abc-{i}",
            "parent_id": None,
            "start_time": time.time(),
        }
        logger.log(TRACE, "Subprocess: run ls -la (enter)", extra=fields)
        logger.log(
            TRACE,
            "Subprocess: run ls -la (exit)",
            extra={**fields, "event": "exit", "duration": 1e-6},
        )
    return (now() - started) / ACTIONS * 1e6


def _corral_messages(logger: logging.Logger) -> float:
    from corral.util import trace_message

    started = now()
    for _ in range(ACTIONS):
        trace_message(logger, "Sandbox", "exec %s", "ls")
    return (now() - started) / ACTIONS * 1e6


def _logging_messages(logger: logging.Logger) -> float:
    started = now()
    for _ in range(ACTIONS):
        logger.log(TRACE, "[Sandbox] exec %s", "ls")
    return (now() - started) / ACTIONS * 1e6


def _disabled_actions(logger: logging.Logger) -> float:
    from corral.util import trace_action

    started = now()
    for _ in range(ACTIONS):
        with trace_action(logger, "Subprocess", "run %s", "ls -la"):
            pass
    return (now() - started) / ACTIONS * 1e6


def _null_contexts() -> float:
    started = now()
    for _ in range(ACTIONS):
        with contextlib.nullcontext():
            pass
    return (now() - started) / ACTIONS * 1e6


def _baseline_logger(directory: Path) -> tuple[logging.Logger, logging.FileHandler]:
    logging.addLevelName(TRACE, "TRACE")
    logger = logging.getLogger("bench_tracing.baseline")
    logger.propagate = False
    logger.setLevel(TRACE)
    handler = logging.FileHandler(directory / "baseline.log")
    handler.setFormatter(logging.Formatter())
    logger.addHandler(handler)
    return logger, handler


def main() -> None:
    directory = Path(tempfile.mkdtemp(prefix="bench-tracing-"))
    os.environ["CORRAL_TRACE_FILE"] = str(directory / "trace-bench.log")
    os.environ.pop("CORRAL_TRACE_LEVEL", None)
    os.environ.pop("CORRAL_OTEL", None)
    import corral.tracing
    from corral.tracing import _install

    try:
        log(f"trace file: {corral.tracing.init()}")
        traced = logging.getLogger("corral.bench")
        plain, handler = _baseline_logger(directory)

        ours, base = side_by_side(
            ROUNDS, lambda: _corral_actions(traced), lambda: _logging_actions(plain), label="action"
        )
        emit(
            benchmark="tracing",
            figure="trace_action enter+exit (2 records), file handler installed",
            corral=median(ours),
            baseline=median(base),
            unit="us/action",
            goal="corral <= 15 us/action (inspect_ai 0.3.285: 36 us)",
            met=median(ours) <= 15,
            corral_samples=ours,
            baseline_samples=base,
            paired_ratio=paired_ratio(ours, base),
            corral_best=min(ours),
            baseline_best=min(base),
            baseline_is="logging.FileHandler + default Formatter, the same 2 records with extra",
        )

        ours, base = side_by_side(
            ROUNDS,
            lambda: _corral_messages(traced),
            lambda: _logging_messages(plain),
            label="message",
        )
        emit(
            benchmark="tracing",
            figure="trace_message (1 record), file handler installed",
            corral=median(ours),
            baseline=median(base),
            unit="us/message",
            goal="corral <= 8 us/message (inspect_ai 0.3.285: 13 us)",
            met=median(ours) <= 8,
            corral_samples=ours,
            baseline_samples=base,
            paired_ratio=paired_ratio(ours, base),
            corral_best=min(ours),
            baseline_best=min(base),
            baseline_is="logging.FileHandler + default Formatter, logger.log(TRACE, msg, arg)",
        )

        quiet = logging.getLogger("corral.bench.quiet")
        quiet.setLevel(logging.INFO)
        ours, base = side_by_side(
            ROUNDS, lambda: _disabled_actions(quiet), _null_contexts, label="disabled"
        )
        emit(
            benchmark="tracing",
            figure="trace_action on a logger not enabled for TRACE",
            corral=median(ours),
            baseline=median(base),
            unit="us/action",
            goal="informational",
            met=True,
            corral_samples=ours,
            baseline_samples=base,
            baseline_is="with contextlib.nullcontext()",
        )
        plain.removeHandler(handler)
        handler.close()
    finally:
        _install.uninstall()  # no gzip of a large file at exit
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
