"""``corral trace``: list, dump and examine the trace files corral writes.

Commands:

* ``list``: the trace files, newest first.
* ``dump``: the records of one file as a JSON array.
* ``anomalies``: actions that never finished (still running, or their process
  died), were cancelled, and (with ``--all``) failed or timed out.
* ``tree``: every action of a file under the action that was running around
  it, so a stuck subprocess shows which scope it belongs to.

``TRACE_FILE`` is optional everywhere: it defaults to the newest trace file.
A relative name is looked up in the trace directory first, then in the current
directory; if only its gzipped version exists (the process has exited since),
that is read instead. Problems the user can fix (no such file, no trace files
at all) end the command with exit code 1 and one line on stderr; so does a
path that is not a regular file (a FIFO is refused, never waited on).

A trace file holds text a model chose, so nothing from it reaches the terminal
as it is: every string is passed through :func:`_visible` (control, bidi and
other non-printable characters shown as ``\x1b``, ``\u202e``, as ``repr``
shows them) and handed to rich as :class:`~rich.text.Text`, never as markup;
JSON output goes through :func:`_json_text`, which escapes the same characters
the JSON way.

This module imports click and rich; only the ``corral`` command line imports
it, never the library.
"""

from __future__ import annotations

import json
import os
import shlex
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..tracing._install import ENV_TRACE_FILE, trace_dir
from ..tracing._records import (
    FINISH_EVENTS,
    ActionTraceRecord,
    TraceFile,
    TraceFileInfo,
    TraceRecord,
    list_trace_files,
    read_trace_file,
)
from ..tracing._storage import writers

__all__ = ["trace"]

_TRACE_FILE = click.argument("trace_file", required=False)
_FILTER = click.option(
    "--filter",
    "filter_",
    metavar="TEXT",
    help="Only records whose message contains TEXT (case-insensitive).",
)


@click.group("trace")
def trace() -> None:
    """List and examine trace files (what corral's actions did, and what is stuck)."""


@trace.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of {file, mtime}.")
def list_command(as_json: bool) -> None:
    """List the trace files, newest first."""
    files = _trace_files(trace_dir())
    if as_json:
        rows = [{"file": str(info.path), "mtime": info.mtime} for info in files]
        click.echo(_json_text(rows))
        return
    if not files:
        click.echo(f"No trace files in {_visible(str(trace_dir()))}.")
        return
    table = Table(box=None, show_edge=False)
    table.add_column("Time", no_wrap=True)
    table.add_column("Trace File", overflow="fold")
    for info in files:
        when = datetime.fromtimestamp(info.mtime).astimezone()
        table.add_row(
            when.strftime("%d-%b %H:%M:%S %Z"), Text(_visible(shlex.quote(str(info.path))))
        )
    Console().print(table)


@trace.command("dump")
@_TRACE_FILE
@_FILTER
@click.option(
    "--json", "as_json", is_flag=True, help="Print JSON (the default; accepted for scripts)."
)
def dump_command(trace_file: str | None, filter_: str | None, as_json: bool) -> None:
    """Print the records of a trace file as a JSON array.

    TRACE_FILE defaults to the newest trace file. Each record is the object
    the writer wrote (see docs/tracing.md for its keys); output is JSON with
    or without --json.
    """
    records = _matching(_read(trace_file).records, filter_)
    dumped = [record.model_dump(mode="json", exclude_unset=True) for record in records]
    click.echo(_json_text(dumped))


@trace.command("anomalies")
@_TRACE_FILE
@_FILTER
@click.option("--all", "show_all", is_flag=True, help="Also show errors and timeouts.")
@click.option("--json", "as_json", is_flag=True, help="Print the anomalies as a JSON object.")
def anomalies_command(
    trace_file: str | None, filter_: str | None, show_all: bool, as_json: bool
) -> None:
    """Show actions still running or cancelled, and the sample each belongs to.

    TRACE_FILE defaults to the newest trace file. Enter and finish records
    are paired by trace_id. An action with no finish record is running: its
    running time is counted up to now while a process still writes the file,
    and up to the file's last write once none does (the process exited or was
    killed). Running actions come longest-running first. With --all, actions
    that raised or timed out are shown too.
    """
    _report(trace_file, filter_, ("running", "cancelled", "errors", "timeouts"), show_all, as_json)


@trace.command("running")
@_TRACE_FILE
@_FILTER
@click.option("--json", "as_json", is_flag=True, help="Print the running actions as JSON.")
def running_command(trace_file: str | None, filter_: str | None, as_json: bool) -> None:
    """Show what a (running) harness is doing now, longest-running first.

    TRACE_FILE defaults to the newest trace file. The running actions of
    ``anomalies``, with the process writing the file (if one still is), the
    task and sample of each action, and how long it has been running.
    """
    _report(trace_file, filter_, ("running",), True, as_json)


@trace.command("tree")
@_TRACE_FILE
@_FILTER
@click.option("--json", "as_json", is_flag=True, help="Print the tree as a JSON object.")
def tree_command(trace_file: str | None, filter_: str | None, as_json: bool) -> None:
    """Show the actions of a trace file as a tree: task, sample, then scopes.

    TRACE_FILE defaults to the newest trace file. Actions are grouped under
    the task and the sample they ran in; inside a group, each action is shown
    under the action that was running around it when it started (its
    parent_id), with its duration, or its running time if it has not
    finished. With --filter, actions whose messages match are shown with the
    actions around them. An action whose parent is not in the file is shown
    at the top of its group.
    """
    traced = _read(trace_file)
    writer = _writer(traced.path)
    nodes = _build_nodes(_actions(traced.records))
    keep = _kept(nodes, filter_)
    until = writer.until(time.time())
    tops = _grouped(nodes, keep)
    if as_json:
        report = {
            "trace_file": str(traced.path),
            "as_of": _iso(time.time()),
            "writer": writer.to_json(),
            **_tree_json(tops, nodes, keep, until),
        }
        click.echo(_json_text(report))
        return
    color = False if os.environ.get("NO_COLOR") else None
    click.echo(f"TRACE: {_visible(str(traced.path))}", color=color)
    if not keep:
        click.echo("No actions found in trace file." if filter_ is None else "No actions match.")
        return
    lines = _draw(tops, nodes, keep, until)
    click.echo("\n".join(lines), color=color)


# -- finding and reading files ----------------------------------------------------------


def _trace_files(directory: Path) -> list[TraceFileInfo]:
    """The trace files of *directory*, plus ``$CORRAL_TRACE_FILE`` whatever its name."""
    try:
        files = list_trace_files(directory)
    except OSError as exc:
        raise click.ClickException(
            f"Cannot read the trace directory '{_visible(str(directory))}': {exc.strerror or exc}."
        ) from None
    configured = os.environ.get(ENV_TRACE_FILE)
    if configured:
        listed = {info.path for info in files}
        base = Path(configured).expanduser()
        for name in (base.name, base.name + ".gz"):
            full = directory / name
            if full in listed:
                continue
            try:
                if full.is_file():
                    files.append(TraceFileInfo(full, full.stat().st_mtime))
            except FileNotFoundError:  # compressed away meanwhile
                continue
        files.sort(key=lambda info: (info.mtime, info.path.name), reverse=True)
    return files


def _resolve(trace_file: str | None) -> Path:
    directory = trace_dir()
    if trace_file is None:
        files = _trace_files(directory)
        if not files:
            raise click.ClickException(f"No trace files in {_visible(str(directory))}.")
        return files[0].path
    given = Path(trace_file).expanduser()
    places = [given] if given.is_absolute() else [directory / given, given]
    for place in places:
        if place.exists():
            return place
        if place.name and (zipped := place.with_name(place.name + ".gz")).exists():
            return zipped  # the process exited and compressed its file
    where = (
        ""
        if given.is_absolute()
        else f" (looked in {_visible(str(directory))} and the current directory)"
    )
    raise click.ClickException(f"The trace file '{_visible(trace_file)}' does not exist{where}.")


def _read(trace_file: str | None) -> TraceFile:
    """Resolve and read a trace file, printing the skipped-records note on stderr."""
    path = _resolve(trace_file)
    try:
        traced = read_trace_file(path)
    except OSError as exc:
        raise click.ClickException(
            f"Cannot read the trace file '{_visible(str(path))}': {exc.strerror or exc}."
        ) from None
    if not traced.records:
        if traced.skipped:
            why = (
                f"none of its lines is a trace record ({traced.skipped} could not be read; "
                f"first: {traced.problem})"
            )
        else:
            why = "it holds no records yet"
        raise click.ClickException(
            f"'{_visible(str(path))}' is not a trace file with records: {_visible(why)}."
        )
    if traced.note:
        click.echo(_visible(traced.note), err=True)
    return traced


@dataclass(frozen=True, slots=True)
class _Writer:
    """Who is writing a trace file, as far as can be told.

    ``state`` is ``"writing"`` (``pids`` hold it open), ``"stopped"`` (no
    process holds it: the one that wrote it exited or was killed), ``"exited"``
    (the file is compressed: its writer exited normally) or ``"unknown"``.
    """

    state: str
    pids: tuple[int, ...]
    last_write: float | None

    def until(self, now: float) -> float:
        """Up to when an unfinished action has been running: now, or the file's last write."""
        if self.state in ("writing", "unknown") or self.last_write is None:
            return now
        return self.last_write

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "pids": list(self.pids),
            "last_write": None if self.last_write is None else _iso(self.last_write),
        }

    def text(self) -> str | None:
        if self.state == "writing":
            pids = ", ".join(str(pid) for pid in self.pids)
            return f"Being written by process {pids}: running actions are running now."
        when = _clock(self.last_write)
        if self.state == "stopped":
            return (
                "No process is writing it any more: its process exited or was killed "
                f"after its last write, at {when}; unfinished actions are timed up to then."
            )
        if self.state == "exited":
            return f"Its process has exited (last written {when})."
        return None


def _writer(path: Path) -> _Writer:
    try:
        mtime: float | None = path.stat().st_mtime
    except OSError:
        mtime = None
    if path.name.endswith(".gz"):
        return _Writer("exited", (), mtime)
    pids = writers(path)
    if pids is None:
        return _Writer("unknown", (), mtime)
    return _Writer("writing" if pids else "stopped", pids, mtime)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).astimezone().isoformat()


def _matching(records: tuple[TraceRecord, ...], filter_: str | None) -> list[TraceRecord]:
    if filter_ is None:
        return list(records)
    needle = filter_.casefold()
    return [r for r in records if needle in r.message.casefold()]


def _actions(records: list[TraceRecord] | tuple[TraceRecord, ...]) -> list[ActionTraceRecord]:
    """The action records of *records*; those with an unknown event are noted and dropped."""
    actions: list[ActionTraceRecord] = []
    unknown: Counter[str] = Counter()
    for record in records:
        if not isinstance(record, ActionTraceRecord):
            continue
        if record.event == "enter" or record.event in FINISH_EVENTS:
            actions.append(record)
        else:
            unknown[record.event] += 1
    if unknown:
        shown = [repr(_shortened(event)) for event in list(unknown)[:_NAMES_SHOWN]]
        if len(unknown) > _NAMES_SHOWN:
            shown.append(f"and {len(unknown) - _NAMES_SHOWN} more")
        names = ", ".join(shown)
        click.echo(
            f"note: skipped {unknown.total()} action record(s) with an unknown event: {names}",
            err=True,
        )
    return actions


#: How many distinct unknown events a note names, and how much of each.
_NAMES_SHOWN = 5
_NAME_CHARS = 40


def _shortened(text: str) -> str:
    return text if len(text) <= _NAME_CHARS else text[:_NAME_CHARS] + "…"


# -- showing hostile text ---------------------------------------------------------------

_SHORT_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _visible(text: str) -> str:
    r"""*text* with every character ``str.isprintable`` rejects escaped, as ``repr`` does.

    That is C0 and C1 controls (``\x1b``, ``\x9b``), DEL, bidi and other format
    characters (``\u202e``), line and paragraph separators, lone surrogates and
    unassigned code points. Printable Unicode and backslashes are kept as they
    are, so an ordinary command reads as it was typed.
    """
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escaped(ch) for ch in text)


def _escaped(ch: str) -> str:
    if ch in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[ch]
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _json_text(value: object) -> str:
    """*value* as indented JSON, with no character that ``str.isprintable`` rejects.

    ``json.dumps`` escapes C0 controls but passes C1 controls, DEL, bidi
    characters and lone surrogates through; those are escaped here as
    ``\\uXXXX`` (a surrogate pair above U+FFFF), which decodes to the same
    text. Only the newlines of the indentation are left: inside a string,
    ``json.dumps`` has escaped them already.
    """
    lines = json.dumps(value, indent=2, ensure_ascii=False).split("\n")
    return "\n".join(
        line if line.isprintable() else "".join(_json_escaped(ch) for ch in line) for line in lines
    )


def _json_escaped(ch: str) -> str:
    if ch.isprintable():
        return ch
    code = ord(ch)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


# -- where an action ran ----------------------------------------------------------------


def _where(record: ActionTraceRecord) -> str:
    """``grading / sample 3`` (or ``grading``, or ``sample 3``), or ``""`` outside both."""
    parts: list[str] = []
    if record.task is not None:
        parts.append(record.task)
    if record.sample_id is not None:
        parts.append(f"sample {record.sample_id}")
    return " / ".join(parts)


def _where_json(record: ActionTraceRecord) -> dict[str, Any]:
    return {"task": record.task, "sample_id": record.sample_id, "span_id": record.span_id}


# -- anomalies --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Row:
    """One anomalous action."""

    record: ActionTraceRecord
    start_time: float | None
    duration: float | None

    @property
    def detail(self) -> str:
        return self.record.detail or self.record.message

    @property
    def end(self) -> float:
        return (self.start_time or 0.0) + (self.duration or 0.0)

    def to_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "action": self.record.action,
            "detail": self.detail,
            "start_time": self.start_time,
            "duration": self.duration,
            "trace_id": self.record.trace_id,
            "parent_id": self.record.parent_id,
            **_where_json(self.record),
        }
        if self.record.event == "error":
            row["error"] = self.record.error
            row["error_type"] = self.record.error_type
        return row


@dataclass(slots=True)
class _Anomalies:
    running: list[_Row] = field(default_factory=list)
    cancelled: list[_Row] = field(default_factory=list)
    errors: list[_Row] = field(default_factory=list)
    timeouts: list[_Row] = field(default_factory=list)

    def buckets(self) -> list[tuple[str, list[_Row]]]:
        return [
            ("running", self.running),
            ("cancelled", self.cancelled),
            ("errors", self.errors),
            ("timeouts", self.timeouts),
        ]


def _replay(actions: list[ActionTraceRecord], until: float) -> _Anomalies:
    """Pair enter and finish records by trace_id and bucket what did not exit.

    An unfinished action's running time is counted up to *until*; running
    actions come longest-running first (unknown start last), the others
    latest finish first.
    """
    found = _Anomalies()
    running: dict[str, ActionTraceRecord] = {}
    buckets = {"cancel": found.cancelled, "error": found.errors, "timeout": found.timeouts}
    for record in actions:
        if record.event == "enter":
            running[record.trace_id] = record
            continue
        enter = running.pop(record.trace_id, None)
        if record.event == "exit":
            continue
        start = record.start_time
        if start is None and enter is not None:
            start = enter.start_time
        buckets[record.event].append(_Row(record, start, record.duration))
    for enter in running.values():
        start = enter.start_time
        found.running.append(_Row(enter, start, None if start is None else max(until - start, 0.0)))
    found.running.sort(key=lambda row: (row.duration is None, -(row.duration or 0.0)))
    for rows in (found.cancelled, found.errors, found.timeouts):
        rows.sort(key=lambda row: row.end, reverse=True)
    return found


def _report(
    trace_file: str | None,
    filter_: str | None,
    names: tuple[str, ...],
    show_all: bool,
    as_json: bool,
) -> None:
    """Print the buckets *names* of the anomalies of a trace file (``anomalies``, ``running``)."""
    traced = _read(trace_file)
    writer = _writer(traced.path)
    now = time.time()
    found = _replay(_actions(_matching(traced.records, filter_)), writer.until(now))
    buckets = [(name, rows) for name, rows in found.buckets() if name in names]
    if as_json:
        report = {
            "trace_file": str(traced.path),
            "as_of": _iso(now),
            "writer": writer.to_json(),
            **{name: [row.to_json() for row in rows] for name, rows in buckets},
        }
        click.echo(_json_text(report))
        return
    console = Console()
    console.print(Text(f"TRACE: {_visible(str(traced.path))}"), soft_wrap=True)
    about = writer.text()
    if about is not None:
        console.print(Text(about), soft_wrap=True)
    shown = [
        (name, rows)
        for name, rows in buckets
        if rows and (show_all or name in ("running", "cancelled"))
    ]
    if not shown:
        if names == ("running",):
            console.print("No running actions found in trace file.")
        elif show_all:
            console.print("No anomalies found in trace file.")
        else:
            console.print(
                "No running or cancelled actions found in trace file "
                "(pass --all to see errors and timeouts)."
            )
        return
    for name, rows in shown:
        console.print()
        console.print(_anomaly_table(name, rows))


_TITLES = {
    "running": "Running Actions",
    "cancelled": "Cancelled Actions",
    "errors": "Error Actions",
    "timeouts": "Timeout Actions",
}


def _anomaly_table(name: str, rows: list[_Row]) -> Table:
    table = Table(title=_TITLES[name], title_justify="left", expand=False)
    table.add_column("Action", no_wrap=True)
    table.add_column("Duration", justify="right", no_wrap=True)
    table.add_column("Task / Sample", overflow="fold")
    table.add_column("Detail", overflow="fold")
    table.add_column("Start Time", no_wrap=True)
    for row in rows:
        detail = Text(_visible(row.detail))
        if row.record.event == "error":
            detail.append(f"\n{_visible(_error_text(row.record))}", style="red")
        table.add_row(
            Text(_visible(row.record.action)),
            _seconds(row.duration),
            Text(_visible(_where(row.record))),
            detail,
            _clock(row.start_time),
        )
    return table


def _error_text(record: ActionTraceRecord) -> str:
    if record.error_type:
        return f"{record.error_type}: {record.error or ''}".rstrip(": ")
    return record.error or "error"


def _seconds(duration: float | None) -> str:
    """Format seconds for a person: ``250µs``, ``4.2ms``, ``1.25s``, ``4m 05s``, ``2h 03m 04s``.

    From a day up: ``3d 04h 05m``. ``None`` (unknown) is ``?``.
    """
    if duration is None:
        return "?"
    if duration < 0.001:
        return f"{duration * 1_000_000:.0f}µs"
    if duration < 0.01:
        return f"{duration * 1000:.1f}ms"
    if duration < 60:
        return f"{duration:.2f}s"
    minutes, seconds = divmod(int(duration), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours:02d}h {minutes:02d}m"
    if hours:
        return f"{hours}h {minutes:02d}m {seconds:02d}s"
    return f"{minutes}m {seconds:02d}s"


def _clock(epoch: float | None) -> str:
    """The local time of day, with the date too when it is not today."""
    if epoch is None:
        return "?"
    when = datetime.fromtimestamp(epoch).astimezone()
    if when.date() == datetime.now().astimezone().date():
        return when.strftime("%H:%M:%S %Z")
    return when.strftime("%d-%b %H:%M:%S %Z")


# -- tree -------------------------------------------------------------------------------

#: The task and sample an action ran in.
_GroupKey = tuple[str | None, int | str | None]


@dataclass(slots=True)
class _Node:
    """One action: its enter and finish records (either may be missing)."""

    trace_id: str
    action: str
    detail: str
    parent_id: str | None
    group: _GroupKey
    enter: ActionTraceRecord | None = None
    finish: ActionTraceRecord | None = None
    messages: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)

    @property
    def record(self) -> ActionTraceRecord:
        record = self.enter or self.finish
        assert record is not None
        return record


@dataclass(slots=True)
class _Group:
    """A task, or a sample (of a task, or of none), and what is drawn under it."""

    task: str | None
    sample_id: int | str | None
    items: list[_Group | _Node] = field(default_factory=list)

    @property
    def is_sample(self) -> bool:
        return self.sample_id is not None


def _build_nodes(actions: list[ActionTraceRecord]) -> dict[str, _Node]:
    """One node per trace_id, children (of its group) in the order they first appear."""
    nodes: dict[str, _Node] = {}
    for record in actions:
        node = nodes.get(record.trace_id)
        if node is None:
            group = (record.task, record.sample_id)
            node = _Node(record.trace_id, record.action, record.detail, record.parent_id, group)
            nodes[record.trace_id] = node
        if record.event == "enter":
            node.enter = record
            node.parent_id = record.parent_id
            node.group = (record.task, record.sample_id)
        else:
            node.finish = record
        node.messages.append(record.message)
    for node in nodes.values():
        parent = _parent(node, nodes)
        if parent is not None:
            parent.children.append(node.trace_id)
    return nodes


def _parent(node: _Node, nodes: dict[str, _Node]) -> _Node | None:
    """The node *node* is drawn under: its parent action, if that ran in the same sample."""
    if node.parent_id is None:
        return None
    parent = nodes.get(node.parent_id)
    if parent is None or parent.group != node.group:
        return None
    return parent


def _kept(nodes: dict[str, _Node], filter_: str | None) -> set[str]:
    """The nodes to show: all of them, or those matching and their ancestors (in their group)."""
    if filter_ is None:
        return set(nodes)
    needle = filter_.casefold()
    keep: set[str] = set()
    for node in nodes.values():
        if any(needle in message.casefold() for message in node.messages):
            current: _Node | None = node
            while current is not None and current.trace_id not in keep:
                keep.add(current.trace_id)
                current = _parent(current, nodes)
    return keep


def _tops(nodes: dict[str, _Node], keep: set[str]) -> list[_Node]:
    """The kept actions drawn at the top of their group: roots, orphans, one of each cycle."""
    tops = [node for node in nodes.values() if node.trace_id in keep and not _parent(node, nodes)]
    reached = _reach(nodes, keep, tops)
    for node in nodes.values():
        if node.trace_id in keep and node.trace_id not in reached:
            tops.append(node)  # its parents form a cycle, so no root reaches it
            reached |= _reach(nodes, keep, [node])
    return tops


def _reach(nodes: dict[str, _Node], keep: set[str], starts: list[_Node]) -> set[str]:
    """The kept actions at or below *starts*."""
    reached: set[str] = set()
    pending = [node.trace_id for node in starts]
    while pending:
        trace_id = pending.pop()
        if trace_id not in reached:
            reached.add(trace_id)
            pending.extend(child for child in nodes[trace_id].children if child in keep)
    return reached


def _grouped(nodes: dict[str, _Node], keep: set[str]) -> list[_Group | _Node]:
    """The top of the tree: tasks (with their samples), samples of no task, and loose actions.

    Each in the order its first action appears in the file.
    """
    top: list[_Group | _Node] = []
    tasks: dict[str, _Group] = {}
    samples: dict[_GroupKey, _Group] = {}
    for node in _tops(nodes, keep):
        task, sample_id = node.group
        if task is None and sample_id is None:
            top.append(node)
            continue
        where = top
        if task is not None:
            group = tasks.get(task)
            if group is None:
                group = tasks[task] = _Group(task, None)
                top.append(group)
            where = group.items
        if sample_id is None:
            where.append(node)
            continue
        sample = samples.get(node.group)
        if sample is None:
            sample = samples[node.group] = _Group(task, sample_id)
            where.append(sample)
        sample.items.append(node)
    return top


def _draw(
    tops: list[_Group | _Node], nodes: dict[str, _Node], keep: set[str], until: float
) -> list[str]:
    """The tree as lines of text with box-drawing guides (iterative: any depth works)."""
    lines: list[str] = []
    drawn: set[str] = set()
    stack: list[tuple[_Group | _Node, str, bool]] = [
        (item, "", i == len(tops) - 1) for i, item in enumerate(tops)
    ]
    stack.reverse()  # the first on top
    while stack:
        item, prefix, last = stack.pop()
        if isinstance(item, _Group):
            label = _group_label(item)
            kids: list[_Group | _Node] = list(item.items)
        else:
            if item.trace_id in drawn:
                continue
            drawn.add(item.trace_id)
            label = _label(item, nodes, until)
            kids = [nodes[c] for c in item.children if c in keep and c not in drawn]
        lines.append(f"{prefix}{'└── ' if last else '├── '}{label}")
        inner = prefix + ("    " if last else "│   ")
        stack.extend(reversed([(kid, inner, i == len(kids) - 1) for i, kid in enumerate(kids)]))
    return lines


def _group_label(group: _Group) -> str:
    if group.is_sample:
        return click.style(_visible(f"sample {group.sample_id}"), fg="cyan", bold=True)
    return click.style(_visible(f"task {group.task}"), fg="blue", bold=True)


def _label(node: _Node, nodes: dict[str, _Node], until: float) -> str:
    action = click.style(_visible(node.action), bold=True)
    text = f"{action}: {_visible(node.detail)}  {_status(node, until)}"
    if node.parent_id is not None and node.parent_id not in nodes:
        parent = _visible(node.parent_id)
        text += click.style(f"  (parent {parent} is not in this file)", dim=True)
    return text


def _running_for(node: _Node, until: float) -> float | None:
    start = node.enter.start_time if node.enter else None
    return None if start is None else max(until - start, 0.0)


def _status(node: _Node, until: float) -> str:
    finish = node.finish
    if finish is None:
        running = _running_for(node, until)
        return click.style(f"running for {_seconds(running)}", fg="yellow", bold=True)
    took = _seconds(finish.duration)
    if finish.event == "exit":
        return click.style(took, fg="green")
    if finish.event == "cancel":
        return click.style(f"cancelled after {took}", fg="magenta")
    if finish.event == "timeout":
        return click.style(f"timed out after {took}", fg="red")
    error = _visible(_error_text(finish))
    return click.style(f"error after {took}: {error}", fg="red", bold=True)


def _tree_json(
    tops: list[_Group | _Node], nodes: dict[str, _Node], keep: set[str], until: float
) -> dict[str, Any]:
    """The tree as flat lists, in the order the text shows it (no nesting: any depth works).

    ``groups``: one object per task or sample with the ``roots`` drawn at its
    top; ``actions``: every action shown, in drawing order, with its
    ``depth`` below its group and the ``children`` drawn under it.
    """
    groups: list[dict[str, Any]] = []
    actions: list[dict[str, Any]] = []
    loose: list[str] = []
    drawn: set[str] = set()

    def walk(root: _Node) -> None:
        pending = [(root, 0)]
        while pending:
            node, depth = pending.pop()
            if node.trace_id in drawn:
                continue
            drawn.add(node.trace_id)
            kids = [nodes[c] for c in node.children if c in keep and c not in drawn]
            actions.append(_node_json(node, depth, [k.trace_id for k in kids], until))
            pending.extend((kid, depth + 1) for kid in reversed(kids))

    def visit(group: _Group) -> None:
        roots: list[str] = []
        groups.append({"task": group.task, "sample_id": group.sample_id, "roots": roots})
        for item in group.items:
            if isinstance(item, _Group):
                visit(item)
            else:
                roots.append(item.trace_id)
                walk(item)

    for item in tops:
        if isinstance(item, _Group):
            visit(item)
        else:
            loose.append(item.trace_id)
            walk(item)
    if loose:
        groups.append({"task": None, "sample_id": None, "roots": loose})
    return {"groups": groups, "actions": actions}


def _node_json(node: _Node, depth: int, children: list[str], until: float) -> dict[str, Any]:
    finish = node.finish
    record = node.record
    start = record.start_time if node.enter is None else node.enter.start_time
    if finish is None:
        status, duration = "running", _running_for(node, until)
    else:
        status, duration = finish.event, finish.duration
        if start is None:
            start = finish.start_time
    out: dict[str, Any] = {
        "trace_id": node.trace_id,
        "parent_id": node.parent_id,
        "action": node.action,
        "detail": node.detail,
        "status": status,
        "start_time": start,
        "duration": duration,
        "depth": depth,
        "children": children,
        **_where_json(record),
    }
    if finish is not None and finish.event == "error":
        out["error"] = finish.error
        out["error_type"] = finish.error_type
    return out
