"""``corral trace`` on hostile input: crafted records, terminal escapes, gzip bombs, FIFOs.

Traced commands come from a model, so a trace file holds hostile text, and a
trace file may itself be crafted. Whatever it holds, the command prints one
note or one error line, never a traceback, never blocks, never loads a huge
line, and never lets the file's text drive the terminal.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from corral.tracing._records import MAX_LINE_BYTES

from ..tracing.test_records import T0, action, message, write_trace
from .test_trace import run

COMMANDS = [("anomalies", "--all"), ("anomalies", "--json"), ("tree",), ("dump",)]


@pytest.fixture
def trace_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private trace directory, and a terminal wide enough that rich never wraps."""
    monkeypatch.setenv("CORRAL_TRACE_FILE", str(tmp_path / "trace-current.log"))
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("NO_COLOR", "1")
    return tmp_path


def crafted(event: str, name: str, /, **fields: str) -> str:
    """An action record as JSON text, each of *fields* spliced in as raw JSON."""
    record = action(event, name, detail=f"forged {name}", start=T0, duration=1.0)
    text = json.dumps(record)[:-1]
    for key, raw in fields.items():
        text = text.replace(f', "{key}": ', f', "_{key}": ')  # keep the crafted one only
        text += f', "{key}": {raw}'
    return text + "}\n"


def write_lines(path: Path, *lines: str) -> Path:
    """Good records around *lines*: one running action before, one cancelled after."""
    before = json.dumps(action("enter", "good1", detail="still running", start=time.time() - 5))
    after = [
        action("enter", "good2", detail="was cancelled"),
        action("cancel", "good2", detail="was cancelled"),
    ]
    text = before + "\n" + "".join(lines) + "".join(json.dumps(r) + "\n" for r in after)
    path.write_text(text, encoding="utf-8")
    return path


BIG_INT = "1" + "0" * 400

CRAFTED = {
    "start-inf": crafted("enter", "bad", start_time="1e400"),
    "start-minus-inf": crafted("cancel", "bad", start_time="-1e400"),
    "start-nan": crafted("cancel", "bad", start_time="NaN"),
    "start-big-int": crafted("cancel", "bad", start_time=BIG_INT),
    "start-year-31 million": crafted("cancel", "bad", start_time="1e15"),
    "start-negative": crafted("enter", "bad", start_time="-1e15"),
    "start-string": crafted("cancel", "bad", start_time='"soon"'),
    "duration-inf": crafted("cancel", "bad", duration="1e400"),
    "duration-nan": crafted("timeout", "bad", duration="NaN"),
    "duration-big-int": crafted("cancel", "bad", duration=BIG_INT),
    "duration-negative": crafted("cancel", "bad", duration="-1.5"),
    "action-list": crafted("enter", "bad", action='["Subprocess"]'),
    "trace-id-object": crafted("enter", "bad", trace_id='{"id": 1}'),
    "event-number": crafted("enter", "bad", event="7"),
    "missing-keys": '{"action": "Subprocess"}\n',
    "a-list": '[{"action": "Subprocess"}]\n',
    "a-string": '"just text"\n',
    "nested-lists": "[" * 100_000 + "\n",
    "nested-objects": '{"a":' * 100_000 + "\n",
}


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
@pytest.mark.parametrize("line", CRAFTED.values(), ids=CRAFTED.keys())
def test_a_crafted_record_is_skipped_with_a_note(
    trace_dir: Path, line: str, command: tuple[str, ...]
) -> None:
    """A record no writer could have written is skipped: one note naming file and line."""
    path = write_lines(trace_dir / "trace-1.log", line)
    result = run(*command)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert result.stderr.startswith(
        f"note: skipped 1 trace record(s) in {path} that could not be read: line 2: "
    )
    assert result.stderr.count("\n") == 1
    assert "still running" in result.stdout
    assert "forged" not in result.stdout
    if command != ("dump",):
        assert "was cancelled" in result.stdout


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_start_times_from_1970_to_the_year_9999_are_shown(
    trace_dir: Path, command: tuple[str, ...]
) -> None:
    """The range a record may hold is a range every command can print, in any time zone."""
    latest = 253_370_764_800.0  # 9999-01-01 UTC
    records = [
        action("enter", "a", detail="epoch", start=0.0),
        action("cancel", "a", detail="epoch", start=0.0, duration=3e9),
        action("enter", "b", detail="far future", start=latest),
        action("cancel", "b", detail="far future", start=latest, duration=0.0),
        action("enter", "c", detail="running since 1970", start=0.0),
    ]
    write_trace(trace_dir / "trace-1.log", records)
    result = run(*command)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert "far future" in result.stdout


# -- terminal escapes -------------------------------------------------------------------

HOSTILE = (
    "title\x1b]0;pwned\x07 clear\x1b[2J csi\x9b31m bidi\u202eevil\u2066 "
    "cr\rbs\x08 nul\x00 del\x7f line\u2028sep [bold]markup[/] [red]x[/red] :smile: é→✓"
)
#: How each hostile character must look on the terminal.
VISIBLE = [
    "\\x1b]0;pwned\\x07",
    "\\x1b[2J",
    "\\x9b31m",
    "\\u202eevil\\u2066",
    "cr\\rbs\\x08",
    "nul\\x00",
    "del\\x7f",
    "line\\u2028sep",
    "[bold]markup[/] [red]x[/red] :smile: é→✓",
]
RAW = ["\x1b", "\x07", "\x9b", "\u202e", "\u2066", "\r", "\x08", "\x00", "\x7f", "\u2028"]


def hostile_records() -> list[dict[str, object]]:
    """Every string field of a running, a cancelled and a failed action, all hostile."""
    now = time.time()
    return [
        action("enter", "r" + HOSTILE, "A" + HOSTILE, "D" + HOSTILE, start=now - 5),
        action("enter", "c", "A" + HOSTILE, "D" + HOSTILE, parent_id="P" + HOSTILE),
        action("cancel", "c", "A" + HOSTILE, "D" + HOSTILE, parent_id="P" + HOSTILE),
        action("enter", "e", detail="D" + HOSTILE),
        action(
            "error",
            "e",
            detail="D" + HOSTILE,
            error="E" + HOSTILE,
            error_type="T" + HOSTILE,
            duration=1.0,
        ),
        action("suspend" + HOSTILE, "r" + HOSTILE),
        message("M" + HOSTILE),
    ]


@pytest.mark.parametrize("color", [False, True], ids=["plain", "color"])
@pytest.mark.parametrize("command", [("anomalies", "--all"), ("tree",)], ids=" ".join)
def test_terminal_escapes_in_a_trace_are_made_visible(
    trace_dir: Path, monkeypatch: pytest.MonkeyPatch, command: tuple[str, ...], color: bool
) -> None:
    """Control and bidi characters are shown escaped, and rich markup in data is not read.

    ``tree`` styles its own text with ANSI codes when colour is on; only those may
    reach the terminal, never an escape sequence from the file.
    """
    if color:
        monkeypatch.delenv("NO_COLOR")
        monkeypatch.setenv("FORCE_COLOR", "1")
    write_trace(trace_dir / "trace-1.log", hostile_records())
    result = run(*command)
    assert result.exit_code == 0, result.output
    out = result.stdout
    for raw in RAW:
        if color and raw == "\x1b":
            continue  # our own styling; checked below
        assert raw not in out + result.stderr, (raw, out)
    if color:
        assert "\x1b]" not in out  # no OSC sequence (a title, a hyperlink)
        assert "\x1b[2J" not in out
    for visible in VISIBLE:
        assert visible in out, (visible, out)
    assert "\\x1b" in result.stderr  # the unknown event, named in the note


def strings(value: object) -> list[str]:
    """Every string in a decoded JSON value."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return [text for item in value for text in strings(item)]
    return []


@pytest.mark.parametrize("command", [("dump",), ("anomalies", "--json")], ids=" ".join)
def test_json_output_escapes_control_and_bidi_characters(
    trace_dir: Path, command: tuple[str, ...]
) -> None:
    """JSON output holds no raw C0, C1 or bidi character, and decodes to the original text."""
    write_trace(trace_dir / "trace-1.log", hostile_records())
    result = run(*command)
    assert result.exit_code == 0, result.output
    for raw in RAW:
        assert raw not in result.stdout
    assert "é→✓" in result.stdout  # printable Unicode stays as it is
    assert any(HOSTILE in text for text in strings(json.loads(result.stdout)))


def test_hostile_file_names_are_made_visible(trace_dir: Path) -> None:
    """A file name with an escape sequence is listed, and named in a header, escaped."""
    path = write_trace(trace_dir / "trace-\x1b]0;pwned\x07.log", [action("enter", "a")])
    for command in (("list",), ("anomalies", str(path)), ("tree", str(path))):
        result = run(*command)
        assert result.exit_code == 0, result.output
        assert "\x1b" not in result.stdout
        assert "\x07" not in result.stdout
        assert "trace-\\x1b]0;pwned\\x07.log" in result.stdout
    assert str(path) in json.loads(run("list", "--json").stdout)[0]["file"]
    path.unlink()
    undecodable = write_trace(trace_dir / os.fsdecode(b"trace-\xff.log"), [action("enter", "a")])
    for command in (("list",), ("list", "--json"), ("tree", str(undecodable))):
        result = run(*command)
        assert result.exit_code == 0, result.output
        assert "trace-\\udcff.log" in result.stdout


# -- long lines and gzip bombs ----------------------------------------------------------


def write_long_line(path: Path, size: int, *, newline: bool) -> Path:
    """A good record, then one line of *size* bytes (then another good record if *newline*)."""
    head = json.dumps(message("before")) + "\n"
    tail = "\n" + json.dumps(message("after")) + "\n" if newline else ""
    chunk = b'{"message": "' + b"a" * (1 << 20)
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(head.encode())
        for _ in range(size // len(chunk)):
            f.write(chunk)
        f.write(tail.encode())
    return path


def test_a_line_longer_than_the_bound_is_skipped_unread(trace_dir: Path) -> None:
    path = write_long_line(trace_dir / "trace-1.log", MAX_LINE_BYTES + (1 << 20), newline=True)
    result = run("dump")
    assert result.exit_code == 0, result.output
    assert [r["message"] for r in json.loads(result.stdout)] == ["before", "after"]
    assert result.stderr == (
        f"note: skipped 1 trace record(s) in {path} that could not be read: "
        f"line 2: longer than {MAX_LINE_BYTES >> 20} MiB, not read\n"
    )


LIMITED = """
import resource, sys
from corral._cli import main

def vm_size():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize")

limit = vm_size() + int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
sys.argv[1:2] = []
main(prog_name="corral")
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
@pytest.mark.parametrize("newline", [False, True], ids=["last-line", "then-a-record"])
def test_a_gzip_bomb_is_read_in_bounded_memory(tmp_path: Path, newline: bool) -> None:
    """A small .gz holding one 384 MiB line reads with 256 MiB of address space to spare.

    Loading that line would need more than the limit, so reading it whole fails
    with a MemoryError; the bounded reader skips it with one note.
    """
    size = 384 << 20
    path = write_long_line(tmp_path / "trace-1.log.gz", size, newline=newline)
    assert path.stat().st_size < 4 << 20
    env = {**os.environ, "CORRAL_TRACE_FILE": str(tmp_path / "trace-current.log")}
    done = subprocess.run(
        [sys.executable, "-c", LIMITED, str(256 << 20), "trace", "dump", str(path)],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    expected = ["before", "after"] if newline else ["before"]
    assert [r["message"] for r in json.loads(done.stdout)] == expected
    assert done.stderr == (
        f"note: skipped 1 trace record(s) in {path} that could not be read: "
        f"line 2: longer than {MAX_LINE_BYTES >> 20} MiB, not read\n"
    )


# -- what is not a regular file ---------------------------------------------------------


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``corral trace ARGS`` in a child process, which a blocking open cannot hang for long."""
    env = {**os.environ, "CORRAL_TRACE_FILE": str(tmp_path / "trace-current.log")}
    return subprocess.run(
        [sys.executable, "-m", "corral", "trace", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=env,
    )


@pytest.mark.parametrize("command", ["dump", "anomalies", "tree"])
def test_a_fifo_without_a_writer_is_refused_without_blocking(tmp_path: Path, command: str) -> None:
    fifo = tmp_path / "trace-1.log"
    os.mkfifo(fifo)
    done = run_cli(tmp_path, command, str(fifo))
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == (
        f"Error: Cannot read the trace file '{fifo}': "
        "only regular files are read as trace files; this is a FIFO.\n"
    )


def test_a_gz_fifo_found_for_a_gone_log_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "trace-1.log.gz")
    done = run_cli(tmp_path, "dump", "trace-1.log")
    assert done.returncode == 1
    assert done.stderr.endswith("this is a FIFO.\n")
    assert done.stderr.count("\n") == 1


def test_a_socket_and_a_device_are_refused(trace_dir: Path) -> None:
    sock_path = trace_dir / "trace-s.log"
    with contextlib.closing(socket.socket(socket.AF_UNIX)) as sock:
        sock.bind(str(sock_path))
        for path, kind in ((sock_path, "a socket"), (Path("/dev/null"), "a character device")):
            result = run("anomalies", str(path))
            assert result.exit_code == 1
            assert result.stderr == (
                f"Error: Cannot read the trace file '{path}': "
                f"only regular files are read as trace files; this is {kind}.\n"
            )


def test_a_symlink_to_a_fifo_is_refused(trace_dir: Path) -> None:
    os.mkfifo(trace_dir / "fifo")
    (trace_dir / "trace-1.log").symlink_to(trace_dir / "fifo")
    result = run("tree", "trace-1.log")
    assert result.exit_code == 1
    assert result.stderr.endswith("this is a FIFO.\n")


def test_a_permission_error_is_one_line(trace_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unreadable trace file is one line (the suite runs as root, who reads anything: the
    refusal is made by the open)."""
    path = write_trace(trace_dir / "trace-1.log", [message("secret")])
    real_open = os.open

    def refuse(file: str | os.PathLike[str], flags: int, *args: int, **kwargs: int) -> int:
        if Path(file) == path:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)
    for command in ("dump", "anomalies", "tree"):
        result = run(command, str(path))
        assert result.exit_code == 1
        assert result.stderr == (
            f"Error: Cannot read the trace file '{path}': Permission denied.\n"
        )
