"""The trace file: format, level, rotation, flushing, compression at exit, failures.

Every test writes under its own ``tmp_path`` (``CORRAL_TRACE_FILE`` and
``XDG_DATA_HOME``, which ``platformdirs`` follows on Linux) and starts from a
fresh tracing state, so nothing reaches the user's real trace directory.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

import corral.tracing
from corral.tracing import _actions, _handler, _install
from corral.util import TRACE, trace_action, trace_message

LOG = logging.getLogger("corral.tests.files")


# -- helpers shared by the tracing tests ---------------------------------------------------


def isolate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point tracing at *tmp_path* and forget any installed state; return the trace file."""
    path = tmp_path / "trace-test.log"
    monkeypatch.setenv("CORRAL_TRACE_FILE", str(path))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv("CORRAL_TRACE_LEVEL", raising=False)
    monkeypatch.delenv("CORRAL_OTEL", raising=False)
    _install._reset_for_tests()
    return path


def read_records(path: Path) -> list[dict[str, Any]]:
    """Flush the installed handler, then parse every line of *path*."""
    handler = _install._handler
    if handler is not None:
        handler.flush()
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def child_env(path: Path, tmp_path: Path) -> dict[str, str]:
    """The environment of a child process that traces to *path*."""
    env = dict(os.environ)
    env["CORRAL_TRACE_FILE"] = str(path)
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    env.pop("CORRAL_TRACE_LEVEL", None)
    env.pop("CORRAL_OTEL", None)
    return env


def write_actions_code(count: int, then: str = "") -> str:
    """Code for a child that traces *count* actions, then runs *then*."""
    return textwrap.dedent(
        f"""
        import logging, sys, time
        from corral.util import trace_action
        log = logging.getLogger("corral.child")
        for i in range({count}):
            with trace_action(log, "Child", "step %d", i):
                pass
        """
    ) + textwrap.dedent(then)


@pytest.fixture(autouse=True)
def trace_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    yield isolate(tmp_path, monkeypatch)
    _install._reset_for_tests()


# -- installing ---------------------------------------------------------------------------


def test_init_is_idempotent_and_returns_the_path(trace_path: Path) -> None:
    assert corral.tracing.trace_file() is None
    assert corral.tracing.init() == trace_path
    assert corral.tracing.init() == trace_path
    assert corral.tracing.trace_file() == trace_path
    assert corral.tracing.trace_dir() == trace_path.parent
    corral_logger = logging.getLogger("corral")
    assert [h for h in corral_logger.handlers if isinstance(h, _handler.TraceFileHandler)] == [
        _install._handler
    ]


def test_first_use_of_a_corral_logger_installs_the_file(trace_path: Path) -> None:
    trace_message(LOG, "Test", "hello %s", "world")
    assert corral.tracing.trace_file() == trace_path
    [record] = read_records(trace_path)
    assert record["message"] == "[Test] hello world"


def test_any_logger_is_traced_without_reaching_its_console(trace_path: Path) -> None:
    """Regression: only the ``corral`` hierarchy reached the trace file.

    ``trace_action(logging.getLogger(__name__), ...)`` is the inspect_ai idiom
    (providers call it with their own loggers). Their records go to the trace
    file, and not to a console handler on the root at its usual level.
    """
    console = ListHandler()
    logging.getLogger().addHandler(console)
    other = logging.getLogger("not_corral.tests")
    quiet = logging.getLogger("not_corral.tests.quiet")
    quiet.setLevel(logging.INFO)  # asked for no TRACE records: none are written
    try:
        with trace_action(other, "Other", "x %d", 1):
            trace_message(other, "Other", "y")
        with trace_action(quiet, "Quiet", "z"):
            trace_message(quiet, "Quiet", "z")
    finally:
        logging.getLogger().removeHandler(console)
        quiet.setLevel(logging.NOTSET)
    assert corral.tracing.trace_file() == trace_path
    records = read_records(trace_path)
    assert [r["message"] for r in records] == [
        "Other: x 1 (enter)",
        "[Other] y",
        "Other: x 1 (exit)",
    ]
    assert records[0]["trace_id"] == records[2]["trace_id"]
    assert console.records == []


def test_a_users_filter_decides_for_the_trace_file_too(trace_path: Path) -> None:
    other = logging.getLogger("not_corral.tests.filtered")

    def only_kept(record: logging.LogRecord) -> bool:
        record.sample_id = 7
        return "drop" not in record.getMessage()

    other.addFilter(only_kept)
    try:
        trace_message(other, "Cat", "keep")
        trace_message(other, "Cat", "drop")
        trace_message(other, "Cat", "with %s", "extra", extra={"task": "t"})
    finally:
        other.removeFilter(only_kept)
    kept, extra = read_records(trace_path)
    assert (kept["message"], kept["sample_id"]) == ("[Cat] keep", 7)
    assert (extra["message"], extra["task"], extra["sample_id"]) == ("[Cat] with extra", "t", 7)


def test_default_file_is_per_pid_in_the_user_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CORRAL_TRACE_FILE")
    expected_dir = tmp_path / "data" / "corral" / "traces"
    assert corral.tracing.trace_dir() == expected_dir
    assert corral.tracing.init() == expected_dir / f"trace-{os.getpid()}.log"
    assert (expected_dir / f"trace-{os.getpid()}.log").is_file()


def test_uninstall_gives_the_logger_back(trace_path: Path) -> None:
    corral_logger = logging.getLogger("corral")
    corral_logger.setLevel(logging.WARNING)
    try:
        corral.tracing.init()
        assert (corral_logger.level, corral_logger.propagate) == (TRACE, False)
        _install._reset_for_tests()
        assert (corral_logger.level, corral_logger.propagate) == (logging.WARNING, True)
        assert not any(isinstance(h, _handler.TraceFileHandler) for h in corral_logger.handlers)
    finally:
        corral_logger.setLevel(logging.NOTSET)


# -- the format ---------------------------------------------------------------------------


def test_record_format(trace_path: Path) -> None:
    with trace_action(LOG, "Subprocess", "run %s", "ls"):
        trace_message(LOG, "Note", "n=%d", 3)
    LOG.info("plain %s", "info")
    enter, note, exit_, info = read_records(trace_path)
    assert list(enter) == [
        "timestamp",
        "level",
        "message",
        "action",
        "detail",
        "event",
        "trace_id",
        "parent_id",
        "start_time",
        "task",
        "sample_id",
        "span_id",
    ]
    assert list(exit_) == [*enter, "duration"]
    assert enter["message"] == "Subprocess: run ls (enter)"
    assert exit_["message"] == "Subprocess: run ls (exit)"
    assert note == {
        "timestamp": note["timestamp"],
        "level": "TRACE",
        "message": "[Note] n=3",
        "task": None,
        "sample_id": None,
        "span_id": None,
    }
    assert (info["task"], info["sample_id"], info["span_id"]) == (None, None, None)
    assert info["level"] == "INFO"
    assert info["message"] == "plain info"
    assert info["module"] == "test_install"
    assert info["function"] == "test_record_format"
    assert isinstance(info["line"], int)
    for record in (enter, note, exit_, info):
        stamp = datetime.fromisoformat(record["timestamp"])
        assert stamp.utcoffset() is not None
        assert abs(stamp.timestamp() - time.time()) < 60


def test_timestamp_is_local_time_with_its_offset(
    trace_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        trace_message(LOG, "Test", "tz")
        [record] = read_records(trace_path)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert record["timestamp"].endswith("+05:30")
    assert len(record["timestamp"]) == len("2026-11-28T01:20:00.123456+05:30")


def test_direct_and_logging_paths_write_the_same_records(trace_path: Path) -> None:
    """A filter forces records through ``Logger.handle``; the lines must not change."""

    def traced() -> None:
        with trace_action(LOG, 'Sa"me', "%s and %s", "th\nis", "caf\u00e9 \\ \u2603"):
            trace_message(LOG, "Same", "m %d", 1)
        with pytest.raises(KeyError), trace_action(LOG, "Same", "fails"):
            raise KeyError("k")

    corral.tracing.init()
    sink, others = _install.route(LOG)
    assert sink is not None
    assert not others
    traced()
    LOG.addFilter(lambda record: True)
    try:
        assert sink is not None
        assert not _actions._plain(sink, LOG)  # a LogRecord is built and filtered
        traced()
    finally:
        LOG.filters.clear()
    records = read_records(trace_path)
    direct, logged = records[: len(records) // 2], records[len(records) // 2 :]
    assert len(direct) == len(logged) == 5
    assert direct[0]["message"] == 'Sa"me: th\nis and caf\u00e9 \\ \u2603 (enter)'
    volatile = {"timestamp", "trace_id", "start_time", "duration", "stacktrace"}
    for one, other in zip(direct, logged, strict=True):
        assert list(one) == list(other)
        assert {k: v for k, v in one.items() if k not in volatile} == {
            k: v for k, v in other.items() if k not in volatile
        }


def test_extra_fields_and_values_json_cannot_encode(trace_path: Path) -> None:
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no")

    trace_message(
        LOG,
        "Extra",
        "with extras",
        extra={"sample": 3, "obj": Path("/x"), "bad": Unprintable(), "keys": {(1, 2): "tuple"}},
    )
    [record] = read_records(trace_path)
    assert record["message"] == "[Extra] with extras"
    assert record["sample"] == 3
    assert record["obj"] == "/x"
    assert record["bad"] == "<unprintable Unprintable>"
    assert record["keys"] == "{(1, 2): 'tuple'}"
    assert "action" not in record


def test_a_filter_can_add_fields(trace_path: Path) -> None:
    def add_sample(record: logging.LogRecord) -> bool:
        record.sample_id = 42
        return True

    LOG.addFilter(add_sample)
    try:
        with trace_action(LOG, "Filtered", "x"):
            pass
    finally:
        LOG.removeFilter(add_sample)
    enter, exit_ = read_records(trace_path)
    assert enter["sample_id"] == exit_["sample_id"] == 42  # the filter's value wins
    assert list(enter)[-3:] == ["task", "sample_id", "span_id"]


def test_bad_message_arguments_do_not_raise(trace_path: Path) -> None:
    trace_message(LOG, "Bad", "%d items", "many")
    trace_message(LOG, "Map", "%(k)s!", {"k": "mapped"})
    bad, mapped = read_records(trace_path)
    assert bad["message"] == "[Bad] %d items (with arguments it cannot take: ('many',))"
    assert mapped["message"] == "[Map] mapped!"


def test_non_utf8_text_is_kept_readable(trace_path: Path) -> None:
    trace_message(LOG, "Text", "caf\u00e9 \ud800 end")
    [record] = read_records(trace_path)
    assert record["message"] == "[Text] caf\u00e9 \ud800 end"


# -- level and propagation ----------------------------------------------------------------


@pytest.mark.parametrize("value", ["INFO", "info", "20"])
def test_trace_level_from_the_environment(
    trace_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CORRAL_TRACE_LEVEL", value)
    corral.tracing.init()
    with trace_action(LOG, "Hidden", "below the level"):
        LOG.info("shown")
    assert [r["message"] for r in read_records(trace_path)] == ["shown"]


def test_bad_trace_level_is_a_value_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CORRAL_TRACE_LEVEL", "LOUD")
    with pytest.raises(ValueError, match=r"CORRAL_TRACE_LEVEL must be a logging level.*'LOUD'"):
        corral.tracing.init()


def test_bad_trace_level_on_first_use_turns_tracing_off(
    trace_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CORRAL_TRACE_LEVEL", "LOUD")
    for _ in range(2):
        with trace_action(LOG, "Runs", "anyway"):
            ran = True
    assert ran
    assert _actions.is_off()
    err = capsys.readouterr().err
    assert err.count("corral: tracing failed") == 1
    assert "CORRAL_TRACE_LEVEL" in err
    with pytest.raises(RuntimeError, match="tracing is off"):
        corral.tracing.init()


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_records_reach_the_root_only_at_the_level_they_did_before(trace_path: Path) -> None:
    """An application's console handler must not fill up with TRACE records."""
    console = ListHandler()
    root = logging.getLogger()
    root.addHandler(console)
    try:
        corral.tracing.init()
        with trace_action(LOG, "Quiet", "x"):
            LOG.info("below root's WARNING")
            LOG.warning("shown on the console")
    finally:
        root.removeHandler(console)
    assert [r.getMessage() for r in console.records] == ["shown on the console"]
    assert len(read_records(trace_path)) == 4


def test_a_logger_level_set_before_installing_decides_what_propagates(
    trace_path: Path,
) -> None:
    console = ListHandler()
    root = logging.getLogger()
    root.addHandler(console)
    corral_logger = logging.getLogger("corral")
    corral_logger.setLevel(logging.INFO)
    try:
        corral.tracing.init()
        assert corral_logger.level == TRACE
        trace_message(LOG, "Quiet", "x")
        LOG.info("info propagates")
    finally:
        root.removeHandler(console)
        _install._reset_for_tests()
        assert corral_logger.level == logging.INFO
        corral_logger.setLevel(logging.NOTSET)
    assert [r.getMessage() for r in console.records] == ["info propagates"]


# -- rotation -----------------------------------------------------------------------------


def test_rotation_keeps_the_ten_newest_trace_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CORRAL_TRACE_FILE")
    directory = tmp_path / "data" / "corral" / "traces"
    directory.mkdir(parents=True)
    now = time.time()
    old = []
    for i in range(15):
        path = directory / (f"trace-{i}.log" if i % 2 else f"trace-{i}.log.gz")
        path.write_text("{}\n")
        os.utime(path, (now - 1000 + i, now - 1000 + i))
        old.append(path)
    other = directory / "notes.txt"
    other.write_text("not a trace file")
    os.utime(other, (now - 5000, now - 5000))
    mine = corral.tracing.init()
    left = sorted(p.name for p in directory.iterdir())
    assert left == sorted([mine.name, other.name, *(p.name for p in old[-9:])])


def test_a_chosen_trace_file_is_never_rotated(trace_path: Path) -> None:
    for i in range(12):
        (trace_path.parent / f"trace-{i}.log").write_text("{}\n")
    corral.tracing.init()
    assert len(list(trace_path.parent.glob("trace-*.log"))) == 13


# -- flushing, exit, crashes --------------------------------------------------------------


def test_the_flusher_writes_within_the_period(trace_path: Path) -> None:
    trace_message(LOG, "Flush", "soon")
    # Polled: the flusher thread's write has no event to await. The deadline
    # is generous, for a loaded machine; a pass costs one flush period.
    written_by = time.monotonic() + _handler.FLUSH_INTERVAL + 30.0
    while not trace_path.stat().st_size:
        assert time.monotonic() < written_by, "the flusher did not write the record"
        time.sleep(0.02)
    assert json.loads(trace_path.read_text())["message"] == "[Flush] soon"


def test_a_full_buffer_is_written_at_once(trace_path: Path) -> None:
    corral.tracing.init()
    for i in range(_handler._FLUSH_LINES):
        trace_message(LOG, "Many", "%d", i)
    assert len(trace_path.read_text().splitlines()) == _handler._FLUSH_LINES


def test_exit_gzips_the_file(trace_path: Path, tmp_path: Path) -> None:
    env = child_env(trace_path, tmp_path)
    for _ in range(2):  # the second run appends a gzip member
        subprocess.run(
            [sys.executable, "-c", write_actions_code(50)], env=env, check=True, timeout=60
        )
    assert not trace_path.exists()
    gz = trace_path.with_name(trace_path.name + ".gz")
    with gzip.open(gz, "rt", encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    assert len(records) == 2 * 50 * 2
    assert [r["event"] for r in records[:2]] == ["enter", "exit"]
    assert records[-1]["detail"] == "step 49"
    assert stat.S_IMODE(gz.stat().st_mode) == 0o600  # whole command lines: the owner's only


def test_sigkill_loses_at_most_the_last_second(trace_path: Path, tmp_path: Path) -> None:
    """Records reach the disk by the flusher alone, so a SIGKILL loses only what is newer."""
    code = write_actions_code(
        100,
        """
        print("traced", flush=True)
        time.sleep(300)
        """,
    )
    with subprocess.Popen(
        [sys.executable, "-c", code],
        env=child_env(trace_path, tmp_path),
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdout is not None
        assert child.stdout.readline() == "traced\n"
        # The child neither flushes nor exits: only its flusher thread writes.
        # Polled (no event to await), with a deadline generous for a loaded machine.
        deadline = time.monotonic() + _handler.FLUSH_INTERVAL + 30.0
        while len(trace_path.read_bytes().splitlines()) < 200:
            assert time.monotonic() < deadline, "the flusher did not write the records"
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    lines = trace_path.read_text().splitlines()
    assert len(lines) == 200
    assert json.loads(lines[-1])["detail"] == "step 99"
    assert not trace_path.with_name(trace_path.name + ".gz").exists()


def test_a_file_still_open_elsewhere_is_left_to_the_last_writer(
    trace_path: Path, tmp_path: Path
) -> None:
    corral.tracing.init()
    trace_message(LOG, "Parent", "first")
    subprocess.run(
        [sys.executable, "-c", write_actions_code(3)],
        env=child_env(trace_path, tmp_path),
        check=True,
        timeout=60,
    )
    gz = trace_path.with_name(trace_path.name + ".gz")
    assert trace_path.exists()
    assert not gz.exists()  # this process still writes it
    _install._at_exit()  # as at this process's exit
    assert not trace_path.exists()
    with gzip.open(gz, "rt", encoding="utf-8") as f:
        messages = [json.loads(line)["message"] for line in f]
    assert len(messages) == 7
    assert "[Parent] first" in messages


def test_a_forked_child_writes_its_own_records_once(trace_path: Path) -> None:
    trace_message(LOG, "Parent", "before the fork")  # buffered, not yet written
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            trace_message(LOG, "Child", "after the fork")
            handler = _install._handler
            assert handler is not None
            handler.flush()
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    messages = [r["message"] for r in read_records(trace_path)]
    assert sorted(messages) == ["[Child] after the fork", "[Parent] before the fork"]


# -- failures -----------------------------------------------------------------------------


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_disk_is_reported_once_and_turns_tracing_off(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CORRAL_TRACE_FILE", "/dev/full")  # every write: ENOSPC
    with trace_action(LOG, "Full", "disk"):
        result = "ran"
    assert result == "ran"
    handler = _install._handler
    assert handler is not None
    handler.flush()
    assert _actions.is_off()
    assert _install._handler is None
    for _ in range(3):
        with trace_action(LOG, "Full", "again"):
            trace_message(LOG, "Full", "again")
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "corral: tracing failed writing /dev/full" in err
    assert "No space left on device" in err


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_the_flusher_thread_turns_tracing_off_on_a_full_disk(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CORRAL_TRACE_FILE", "/dev/full")
    trace_message(LOG, "Full", "disk")
    off_by = time.monotonic() + _handler.FLUSH_INTERVAL + 30.0  # polled, as above
    while not _actions.is_off():
        assert time.monotonic() < off_by, "the flusher did not write"
        time.sleep(0.02)
    assert capsys.readouterr().err.count("corral: tracing failed") == 1


def test_an_unwritable_directory_turns_tracing_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("CORRAL_TRACE_FILE", str(blocker / "trace.log"))
    with trace_action(LOG, "No", "directory"):
        pass
    assert _actions.is_off()
    assert "while installing the trace file" in capsys.readouterr().err


def test_a_handler_on_both_the_corral_logger_and_the_root_sees_a_record_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: pytest's caplog attaches to non-propagating loggers and the root."""
    isolate(tmp_path, monkeypatch)
    try:
        _install.install()
        corral_logger = logging.getLogger("corral")
        handler = ListHandler()
        corral_logger.addHandler(handler)
        logging.getLogger().addHandler(handler)
        try:
            logging.getLogger("corral.any").warning("once")
        finally:
            corral_logger.removeHandler(handler)
            logging.getLogger().removeHandler(handler)
        assert [r.getMessage() for r in handler.records] == ["once"]
    finally:
        _install._reset_for_tests()


def test_a_level_set_later_is_seen_by_the_route(trace_path: Path) -> None:
    """The route caches its level answer in logging's own cache, which every setLevel clears."""
    corral.tracing.init()
    other = logging.getLogger("not_corral.tests.cached")
    try:
        assert _install.route(other)[0] is not None
        other.setLevel(logging.INFO)
        assert _install.route(other)[0] is None
        other.setLevel(logging.NOTSET)
        assert _install.route(other)[0] is not None
        logging.disable(logging.INFO)
        assert _install.route(other)[0] is None
    finally:
        logging.disable(logging.NOTSET)
        other.setLevel(logging.NOTSET)
    assert _install.route(other)[0] is not None


def test_a_record_seen_by_other_handlers_is_written_once_and_left_as_it_was(
    trace_path: Path,
) -> None:
    """A TRACE record that also reaches a handler of the user's is written to the file
    once, whether the trace file gets it directly (any logger) or through the
    ``corral`` hierarchy, and carries nothing of corral's to that handler."""
    listener = ListHandler()
    listener.setLevel(TRACE)
    root = logging.getLogger()
    root.addHandler(listener)
    saved = root.level
    root.setLevel(TRACE)
    other = logging.getLogger("not_corral.tests.heard")
    try:
        trace_message(LOG, "Ours", "a")
        trace_message(other, "Theirs", "b")
    finally:
        root.removeHandler(listener)
        root.setLevel(saved)
    assert [r["message"] for r in read_records(trace_path)] == ["[Ours] a", "[Theirs] b"]
    assert [r.getMessage() for r in listener.records] == ["[Ours] a", "[Theirs] b"]
    assert all(not name.startswith("_corral") for r in listener.records for name in vars(r))
