"""``corral demo``: the main job, a task of sandboxed samples with a live display.

One ``corral.task("demo", sandbox=SPEC, max_sandboxes=...)`` runs N samples
side by side. Each sample keeps its progress in a :class:`StoreModel`, writes
files into its ``sandbox()`` and reads them back, runs a few commands there
and checks what they print, and calls a ``@subtask`` grader that runs a
command of its own. One sample runs a command that times out on purpose
(``SandboxTimeoutError``), one is cancelled by its ``time_limit``
(``TimeoutError``). While it runs, the display chosen by ``--display`` (else
``display_type()``, from ``$CORRAL_DISPLAY``) shows its progress (see
:mod:`._demo_display`); each sample's log is written as JSON; a summary table
ends the run, with exec latencies and the processes and sandboxes left
behind (there must be none), followed by where the logs and the trace file are.

Ctrl-C cancels the run like any cancellation, so the runtime cleans up every
sample's sandbox and process on the way out; the demo then prints one line
saying how many samples finished, the summary of those (marked partial), and
exits with 130 (the shell's status for SIGINT).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
from pydantic import Field
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

import corral
from corral._core._leftovers import harness_records
from corral._core._procfs import live_descendants
from corral._process._guardian import guardian_pid
from corral.tracing import init as init_tracing
from corral.tracing import trace_file
from corral.util import (
    ExecResult,
    SandboxEnvironmentSpec,
    SandboxTimeoutError,
    SandboxUnavailableError,
    StoreModel,
    concurrency_status,
    sandbox,
    store_as,
    subtask,
    transcript,
)
from corral.util._display import display_type, registered_live

from ._demo_display import (
    LIVE_DISPLAYS,
    SAMPLE_ID,
    ActionTracker,
    LiveView,
    NoView,
    PlainView,
    View,
    first_line,
)

if TYPE_CHECKING:
    from corral import Sample

__all__ = [
    "INTERRUPTED_STATUS",
    "DemoConfig",
    "DemoProgress",
    "DemoSetupError",
    "parse_sandbox_spec",
    "run_demo",
]

#: Seconds the deliberately slow command may run before its exec times out.
EXEC_TIMEOUT = 0.3
#: The time limit of the sample that is cancelled on purpose.
SHORT_TIME_LIMIT = 0.5
#: The time limit of every other sample (generous: it is never meant to fire).
TIME_LIMIT = 60.0

OK, TIMED_OUT, TIME_LIMIT_HIT, FAILED = "ok", "timed out", "time limit", "failed"

#: The exit status after Ctrl-C: 128 + SIGINT, as a shell reports a process it killed.
INTERRUPTED_STATUS = 130


class DemoProgress(StoreModel):
    """What a sample has done so far, kept in its store (and so in its log)."""

    stage: str = "started"
    files_written: int = 0
    execs: int = 0
    checks: list[str] = Field(default_factory=list)
    score: float | None = None


@dataclass(frozen=True)
class DemoConfig:
    """The options of ``corral demo``.

    Attributes:
        backend: ``"trio"`` or ``"asyncio"``.
        samples: How many samples to run.
        sandbox: The task's sandbox spec.
        max_sandboxes: How many samples may hold a sandbox at once.
        logs: The directory under which ``demo-<time>/`` is created.
        display: How progress is shown: a :data:`~corral.util.DisplayType`
            (``None``: :func:`~corral.util.display_type`, read when the demo runs).
    """

    backend: str = "trio"
    samples: int = 40
    sandbox: SandboxEnvironmentSpec = field(default_factory=lambda: SandboxEnvironmentSpec("local"))
    max_sandboxes: int = 8
    logs: Path = Path("logs")
    display: str | None = None

    def timeout_sample(self) -> int:
        """The id of the sample whose command times out on purpose.

        It is one of the first samples, so it gets a sandbox at once.
        """
        return min(3, self.samples)

    def limited_sample(self) -> int | None:
        """The id of the sample cancelled by its time limit (none with one sample).

        It is one of the first samples, so that it gets a sandbox at once and
        the limit fires while its command runs, not while it waits for a slot.
        """
        if self.samples < 2:
            return None
        chosen = min(5, self.samples)
        return chosen if chosen != self.timeout_sample() else 1

    def expected(self, id: int) -> str:
        """The outcome sample *id* is designed to have."""
        if id == self.timeout_sample():
            return TIMED_OUT
        if id == self.limited_sample():
            return TIME_LIMIT_HIT
        return OK


@dataclass
class _Report:
    """What the run measured, filled in by the samples and the display."""

    config: DemoConfig
    log_dir: Path
    outcomes: dict[int, str] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    execs: int = 0
    entered: int = 0
    logs_written: int = 0
    peak_sandboxes: int = 0
    peak_subprocesses: int = 0
    limits: dict[str, tuple[int, int]] = field(default_factory=dict)
    interrupted: bool = False
    view: View = field(default_factory=NoView)


def parse_sandbox_spec(text: str) -> SandboxEnvironmentSpec:
    """Parse ``TYPE`` or ``TYPE:CONFIG`` and check that the type is registered.

    Raises:
        ValueError: The type is empty or not a registered sandbox type (the
            message names it and lists the known ones).
    """
    from corral.sandboxes._registry import sandbox_class

    kind, _, config = text.partition(":")
    if not kind:
        raise ValueError(f"sandbox spec {text!r} has no type (expected TYPE or TYPE:CONFIG)")
    sandbox_class(kind)
    return SandboxEnvironmentSpec(kind, config or None)


async def _exec(report: _Report, cmd: list[str], timeout: float | None = None) -> ExecResult[str]:
    """Run *cmd* in the sample's sandbox, counting it and timing it."""
    report.execs += 1
    store_as(DemoProgress).execs += 1
    started = time.perf_counter()
    result = await sandbox().exec(cmd, timeout=timeout)
    report.latencies.append(time.perf_counter() - started)
    if result.returncode == -signal.SIGINT:
        raise _CtrlC(cmd[0])
    return result


class _CtrlC(Exception):
    """A command died of the terminal's Ctrl-C.

    The terminal sends SIGINT to the demo's whole process group; a command
    started that very moment (forked, not yet in a group of its own) gets it too.
    """


def _check(what: str, ok: bool, detail: object = "") -> None:
    """Record a passed check in the store, or raise naming the failed one."""
    if not ok:
        raise AssertionError(f"check {what!r} failed: {detail}")
    store_as(DemoProgress).checks.append(what)


@subtask
async def grade(expected: int, report: _Report) -> dict[str, Any]:
    """Grade the sample's answer file by reading it with a command in the sandbox."""
    result = await _exec(report, ["cat", "answer.txt"])
    answer = result.stdout.strip()
    return {"answer": answer, "expected": expected, "correct": answer == str(expected)}


async def _work(id: int, report: _Report) -> None:
    """The body of sample *id*: files, commands, checks and a graded answer."""
    progress = store_as(DemoProgress)
    sandboxes = concurrency_status().get(f"sandboxes/{report.config.sandbox.type}", (0, 0))
    report.peak_sandboxes = max(report.peak_sandboxes, sandboxes[0])

    progress.stage = "writing files"
    numbers = "".join(f"{k}\n" for k in range(1, id + 1))
    notes = f"# sample {id}\n\nthe numbers 1..{id}, one a line, in numbers.txt\n"
    await sandbox().write_file("input/numbers.txt", numbers)
    await sandbox().write_file("notes/README.md", notes.encode())
    progress.files_written += 2
    _check("read back", await sandbox().read_file("input/numbers.txt") == numbers)
    _check(
        "read back bytes",
        await sandbox().read_file("notes/README.md", text=False) == notes.encode(),
    )

    progress.stage = "running commands"
    total = id * (id + 1) // 2
    add = 's=0; while read n; do s=$((s + n)); done < "$1"; echo "$s" > answer.txt; cat answer.txt'
    result = await _exec(report, ["sh", "-c", add, "sh", "input/numbers.txt"])
    _check("sum", result.success and result.stdout.strip() == str(total), result)
    result = await _exec(report, ["wc", "-l", "input/numbers.txt"])
    _check("wc -l", result.success and result.stdout.split()[0] == str(id), result)
    result = await _exec(report, ["sha256sum", "input/numbers.txt"])
    digest = hashlib.sha256(numbers.encode()).hexdigest()
    _check("sha256sum", result.success and result.stdout.split()[0] == digest, result)

    if id == report.config.timeout_sample():
        progress.stage = "waiting for a slow command"
        try:
            await _exec(report, ["sleep", "30"], timeout=EXEC_TIMEOUT)
        except SandboxTimeoutError as exc:
            # A failed exec is traced but, as in inspect_ai, not a SandboxEvent.
            transcript().info({"sleep 30": str(exc)})
            progress.stage = "timed out"
            report.outcomes[id] = TIMED_OUT
            report.errors[id] = f"{type(exc).__name__}: {exc}"
            return
        raise AssertionError(f"sleep 30 did not time out after {EXEC_TIMEOUT} s")
    if id == report.config.limited_sample():
        progress.stage = "sleeping past the time limit"
        await _exec(report, ["sleep", "30"])
        raise AssertionError(f"the time limit of {SHORT_TIME_LIMIT} s did not fire")

    progress.stage = "grading"
    verdict = await grade(total, report)
    _check("graded correct", verdict["correct"], verdict)
    progress.score = 1.0
    progress.stage = "done"
    report.outcomes[id] = OK


async def _run_sample(
    task: corral.Task,
    id: int,
    report: _Report,
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Run sample *id*, record its outcome and write its log.

    Reports ready (``task_status.started()``) once the sample holds its
    sandbox, or once it is over if it never got one. A sample cancelled
    with the task (Ctrl-C) writes its log too, but records no outcome.
    """
    token = SAMPLE_ID.set(id)  # the display tells this sample's trace records by it
    try:
        await _sample(task, id, report, task_status)
    finally:
        SAMPLE_ID.reset(token)


async def _sample(
    task: corral.Task, id: int, report: _Report, task_status: anyio.abc.TaskStatus[None]
) -> None:
    config = report.config
    ready = False
    limit = SHORT_TIME_LIMIT if id == config.limited_sample() else TIME_LIMIT
    metadata = {"numbers": id, "expected": config.expected(id), "time_limit": limit}
    sample: Sample | None = None
    try:
        async with task.sample(id, metadata=metadata, time_limit=limit) as sample:
            report.entered += 1
            report.view.started(id, limit)
            task_status.started()
            ready = True
            await _work(id, report)
    except _CtrlC:
        report.interrupted = True  # as cancelled with the task: no outcome
    except SandboxTimeoutError as exc:  # only the designated sample's exec may time out
        report.outcomes[id] = FAILED
        report.errors[id] = f"{type(exc).__name__}: {exc}"
    except TimeoutError as exc:
        report.outcomes[id] = TIME_LIMIT_HIT
        report.errors[id] = str(exc)
    except Exception as exc:  # one broken sample must not stop the others
        report.outcomes[id] = FAILED
        report.errors[id] = f"{type(exc).__name__}: {exc}"
    finally:
        # None: the sample was cancelled or hit its time limit while it waited for a sandbox.
        if sample is not None:
            sample.log().write_json(report.log_dir / f"sample-{id}.json")
            report.logs_written += 1
        outcome = report.outcomes.get(id)
        if outcome is not None:
            error = report.errors.get(id)
            report.view.finished(id, outcome, error, expected=outcome == config.expected(id))
    if not ready:
        task_status.started()


def _poll(report: _Report) -> None:
    """Note the sandbox and subprocess limits in use now, and their peaks; tell the view."""
    status = concurrency_status()
    keys = (f"sandboxes/{report.config.sandbox.type}", "subprocesses")
    report.limits = {name: value for name, value in status.items() if name in keys}
    in_use = status.get("subprocesses", (0, 0))[0]
    report.peak_subprocesses = max(report.peak_subprocesses, in_use)
    report.view.set_limits(report.limits)


async def _refresh(live: Live | None, report: _Report) -> None:
    """Poll the limits, and redraw the live display, ten times a second (until cancelled)."""
    while True:
        _poll(report)
        if live is not None:
            live.refresh()
        await anyio.sleep(0.1)


class DemoSetupError(Exception):
    """The demo's task could not start: its sandbox could not be set up (a one-line message)."""


async def _main(report: _Report, live: Live | None) -> None:
    config = report.config
    async with contextlib.AsyncExitStack() as stack:
        try:
            # Entering the task runs the sandbox's task_init: a configuration error
            # surfaces here, once, before any sample starts.
            task = await stack.enter_async_context(
                corral.task("demo", sandbox=config.sandbox, max_sandboxes=config.max_sandboxes)
            )
        except (ValueError, OSError, SandboxUnavailableError) as exc:
            raise DemoSetupError(
                f"the sandbox {config.sandbox.type!r} could not be set up: {exc}"
            ) from exc
        if live is not None:  # drawn once the task is set up: not over a setup error
            if not live.console.is_terminal:
                # rich ends its last frame with a newline only on a terminal
                stack.callback(live.console.line)
            stack.enter_context(live)
            stack.enter_context(registered_live(live))
            stack.callback(_last_frame, report, live)  # also when interrupted
        async with anyio.create_task_group() as display:
            if threading.current_thread() is threading.main_thread():
                await display.start(_cancel_on_ctrl_c, task, report)
            display.start_soon(_refresh, live, report)
            async with anyio.create_task_group() as samples:
                # The two samples designed to time out get their sandboxes first,
                # so that their limits fire while their commands run.
                special = [config.timeout_sample(), config.limited_sample()]
                for id in special:
                    if id is not None:
                        await samples.start(_run_sample, task, id, report)
                for id in range(1, config.samples + 1):
                    if id not in special:
                        samples.start_soon(_run_sample, task, id, report)
            display.cancel_scope.cancel("the demo's samples finished")


def _last_frame(report: _Report, live: Live) -> None:
    """Draw the live display once more, as the samples left it."""
    _poll(report)
    live.refresh()


async def _cancel_on_ctrl_c(
    task: corral.Task, report: _Report, *, task_status: anyio.abc.TaskStatus[None]
) -> None:
    """Turn Ctrl-C into a cancellation of the demo's task.

    Under trio, a ``KeyboardInterrupt`` is raised in whatever code runs when
    the signal comes, possibly half way into entering a nursery, which
    corrupts trio's state; a cancellation unwinds every scope in order.
    """
    with anyio.open_signal_receiver(signal.SIGINT) as signals:
        task_status.started()
        async for _ in signals:
            report.interrupted = True
            task.cancel("Ctrl-C")
            return


def _live_descendants() -> set[int]:
    """The live (non-zombie) descendants of this process, from /proc.

    The runtime's guardian is not one: it lives as long as this process, by design.
    """
    return set(live_descendants(os.getpid())) - {guardian_pid()}


def _recorded_sandboxes() -> dict[str, dict[str, Any]]:
    """The sandboxes this process made whose cleanup has not succeeded, by id.

    Read from the harness records ``corral sandbox cleanup`` uses (see
    :mod:`corral._core._leftovers`): for the ssh sandbox, a remote directory
    and the processes tagged with it stay recorded until they are known gone.
    """
    pid = os.getpid()
    return {
        id: entry
        for record in harness_records()
        if record.pid == pid
        for id, entry in record.entries.items()
    }


def _remote_processes(entries: dict[str, dict[str, Any]], backend: str) -> int | None:
    """How many processes the ssh sandboxes among *entries* left running on their hosts.

    Each host is asked (read only) for the processes carrying the sandbox's
    tag. ``None`` when a host could not be reached (or a record is damaged).
    """
    from corral.sandboxes._sweep import Leftover

    leftovers = [
        Leftover("ssh", id, entry, os.getpid(), "")
        for id, entry in entries.items()
        if entry.get("type") == "ssh"
    ]
    if not leftovers:
        return 0
    from corral.sandboxes._ssh._sweep import count_ssh  # asyncssh: only when needed

    counts = anyio.run(count_ssh, leftovers, backend=backend)
    return None if None in counts else sum(count for count in counts if count is not None)


def _percentile(values: list[float], q: float) -> float:
    """The nearest-rank *q*-th percentile of *values*, which must not be empty."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def _summary(
    report: _Report,
    elapsed: float,
    left: int,
    *,
    sandboxes_left: int = 0,
    remote_left: int | None = 0,
    interrupted: bool = False,
) -> tuple[Table, bool]:
    """Build the summary table; also say whether everything went as designed.

    *left* counts the processes left behind on this machine, *remote_left*
    those the ssh sandboxes left on their hosts (``None``: a host could not
    be asked), *sandboxes_left* the sandboxes whose cleanup did not succeed
    (for the ssh sandbox, on the remote hosts). With *interrupted*, the table
    is marked partial and the outcome counts are checked against what the samples that finished were
    designed to do. The table fits 80 columns; the paths are not in it (see
    :func:`_locations`).
    """
    config = report.config
    counts = dict.fromkeys((OK, TIMED_OUT, TIME_LIMIT_HIT, FAILED), 0)
    for outcome in report.outcomes.values():
        counts[outcome] += 1
    expected = dict.fromkeys(counts, 0)
    for id in report.outcomes if interrupted else range(1, config.samples + 1):
        expected[config.expected(id)] += 1
    as_designed = all(report.outcomes.get(id) == config.expected(id) for id in report.outcomes)
    as_designed = as_designed and len(report.outcomes) == config.samples

    title = f"corral {corral.__version__} demo under {config.backend}"
    table = Table(title=f"{title} (partial: interrupted)" if interrupted else title)
    table.add_column("measure", no_wrap=True)
    table.add_column("value", overflow="fold")
    table.add_column("check", no_wrap=True)

    def row(what: str, value: object, ok: bool | None = None) -> None:
        mark = "" if ok is None else ("ok" if ok else "FAIL")
        table.add_row(what, str(value), Text(mark, style="green" if ok else "red"))

    if interrupted:
        row("samples finished", f"{len(report.outcomes)} of {config.samples}")
    row("samples ok", counts[OK], counts[OK] == expected[OK])
    row("timed out (exec timeout)", counts[TIMED_OUT], counts[TIMED_OUT] == expected[TIMED_OUT])
    hit = counts[TIME_LIMIT_HIT]
    row("hit time limit", hit, hit == expected[TIME_LIMIT_HIT])
    row("failed", counts[FAILED], counts[FAILED] == 0)
    row("execs", report.execs)
    latencies = [value for value in report.latencies if math.isfinite(value)]
    if latencies:
        p50, p95 = _percentile(latencies, 50), _percentile(latencies, 95)
        row("exec latency p50 / p95", f"{p50 * 1000:.1f} ms / {p95 * 1000:.1f} ms")
    else:
        row("exec latency p50 / p95", "no exec finished")
    row("peak sandboxes in use", f"{report.peak_sandboxes}/{config.max_sandboxes}")
    row("peak subprocesses in use", report.peak_subprocesses)
    if remote_left == 0:
        row("processes left behind", left, left == 0)
    else:
        remote = "?" if remote_left is None else str(remote_left)
        row("processes left behind", f"{left} here, {remote} on hosts", left == remote_left == 0)
    row("sandboxes left behind", sandboxes_left, sandboxes_left == 0)
    logs_ok = report.logs_written == report.entered
    unstarted = config.samples - report.entered
    note = f" ({unstarted} never got a sandbox)" if unstarted else ""
    row("sample logs written", f"{report.logs_written}{note}", logs_ok)
    row("elapsed", f"{elapsed:.2f} s")
    ok = as_designed and logs_ok and left == 0 and remote_left == 0 and sandboxes_left == 0
    return table, ok


def _locations(report: _Report) -> list[str]:
    """Where the sample logs and the trace file are: one line each, to print whole.

    Printed with ``soft_wrap``, a path is never cut inside a name; a terminal
    narrower than it wraps the line, and it still copies as one.
    """
    trace = trace_file()
    # The trace file is gzipped to <name>.gz when the process exits.
    return [
        f"sample logs: {report.log_dir}",
        f"trace file:  {trace}.gz (at exit)" if trace is not None else "trace file:  none",
    ]


def _choose_view(config: DemoConfig, console: Console, tracker: ActionTracker) -> View:
    display = config.display if config.display is not None else display_type()
    if display in LIVE_DISPLAYS:
        return LiveView(f"demo ({config.backend})", config.samples, tracker)
    if display in ("plain", "log"):
        return PlainView(console, config.samples)
    return NoView()


def run_demo(config: DemoConfig, console: Console | None = None) -> int:
    """Run the demo, showing its progress, print the summary, return an exit status.

    The display is ``config.display``, else :func:`~corral.util.display_type`:
    ``full``, ``rich`` and ``conversation`` draw the live view, ``plain`` and
    ``log`` print one line per finished sample, ``none`` shows nothing until
    the summary.

    Ctrl-C (``KeyboardInterrupt``, alone or in the exception group of the
    task groups it unwound) ends the run: the live display stops, one line
    says how many samples finished, and the summary of those follows. Any
    other error raised along with it propagates.

    Returns:
        0 when every sample behaved as designed (the deliberate timeout and
        time limit included), no process or sandbox was left behind and every
        log was written; 130 (:data:`INTERRUPTED_STATUS`) after Ctrl-C; 1
        otherwise.

    Raises:
        DemoSetupError: The log directory cannot be created, or the task's
            sandbox could not be set up (its configuration is wrong, or no
            host can be reached).
    """
    console = console if console is not None else Console()
    log_dir = config.logs / f"demo-{datetime.now():%Y%m%d-%H%M%S}"
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise DemoSetupError(f"cannot create the log directory '{log_dir}': {reason}") from None
    init_tracing()  # the trace records the display follows, and the file the summary names
    tracker = ActionTracker()
    report = _Report(config, log_dir, view=_choose_view(config, console, tracker))
    already_running = _live_descendants()
    already_recorded = _recorded_sandboxes()
    started = time.monotonic()
    view = report.view
    live = None
    if isinstance(view, LiveView):
        live = Live(view, console=console, auto_refresh=False)
    interrupted = False
    # Only the live view shows actions: otherwise the trace records keep their fast path.
    with tracker.attached() if live is not None else contextlib.nullcontext():
        try:
            anyio.run(_main, report, live, backend=config.backend)
        except* KeyboardInterrupt:
            # Before the demo's own handler was in place: the cancellation it
            # caused has cleaned up every sample on the way here.
            interrupted = True
    interrupted = interrupted or report.interrupted
    elapsed = time.monotonic() - started
    if interrupted:
        finished = f"{len(report.outcomes)} of {config.samples} samples finished"
        console.print(f"interrupted: {finished}", style="yellow", markup=False)
    # Only what the demo started counts (a test's server, say, was there before).
    left = len(_live_descendants() - already_running)
    recorded = _recorded_sandboxes()
    new = {id: entry for id, entry in recorded.items() if id not in already_recorded}
    remote_left = _remote_processes(new, config.backend)
    summary, ok = _summary(
        report,
        elapsed,
        left,
        sandboxes_left=len(new),
        remote_left=remote_left,
        interrupted=interrupted,
    )
    console.print(summary)
    for line in _locations(report):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    for id, error in sorted(report.errors.items()):
        if report.outcomes.get(id) != config.expected(id):
            line = f"sample {id}: {first_line(error)}"
            console.print(line, style="red", markup=False, highlight=False, soft_wrap=True)
    if interrupted:
        return INTERRUPTED_STATUS
    console.print("as designed" if ok else "NOT as designed", style="green" if ok else "red")
    return 0 if ok else 1
