"""``corral sandbox cleanup`` and ``corral sandbox check``."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import ClassVar

import pytest
from click.testing import CliRunner

from corral._cli._sandbox import ENV_TYPE, sandbox
from corral.sandboxes import _registry
from corral.sandboxes._local import LocalSandboxEnvironment

#: Defines the sandbox type "broken": the local sandbox, except that with a
#: config file saying ``corrupt = true``, ``read_file`` returns the wrong data.
#: Like a provider configured from a spec, it is given the file's path.
BROKEN_PROVIDER = textwrap.dedent(
    """\
    from corral.util import sandboxenv
    from corral.sandboxes._local import LocalSandboxEnvironment

    @sandboxenv("broken")
    class BrokenSandbox(LocalSandboxEnvironment):
        corrupt = False

        @classmethod
        async def sample_init(cls, task_name, config, metadata):
            import pathlib
            from corral._core._config_files import load_config_file
            assert isinstance(config, str) and pathlib.Path(config).is_absolute(), config
            settings = load_config_file(config)
            environments = await super().sample_init(task_name, None, metadata)
            for environment in environments.values():
                environment.corrupt = settings["corrupt"]
            return environments

        async def read_file(self, file, text=True):
            data = await super().read_file(file, text)
            return data[::-1] if self.corrupt else data

    from corral._cli._sandbox import sandbox
    sandbox()
    """
)


class FakeSandbox(LocalSandboxEnvironment):
    """The local sandbox, recording the calls of ``cli_cleanup``."""

    calls: ClassVar[list[str | None]] = []
    fail: ClassVar[bool] = False

    @classmethod
    async def cli_cleanup(cls, id: str | None) -> None:
        cls.calls.append(id)
        if cls.fail:
            raise RuntimeError("the cloud is down")
        print(f"fake removed {id or 'everything'}")


@pytest.fixture
def fake_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """A registry of "local", "fake" and "missing" (whose module does not exist)."""
    monkeypatch.setattr(FakeSandbox, "calls", [])
    table: dict[str, _registry.RegistryEntry] = {
        "local": "corral.sandboxes._local:LocalSandboxEnvironment",
        "fake": FakeSandbox,
        "missing": "corral_no_such_module:Sandbox",
    }
    monkeypatch.setattr(_registry, "_table", table)
    monkeypatch.setattr(_registry, "_entry_points", list)
    monkeypatch.setattr(_registry, "_entry_points_loaded", False)


def run_cli(code: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run *code* (which ends by calling the ``sandbox`` group) with *args*, as a process."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
    )


RUN_SANDBOX = "from corral._cli._sandbox import sandbox; sandbox()"

# -- cleanup ----------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def own_state_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No records but the test's own (the suite's harness records its sandboxes too)."""
    monkeypatch.setenv("CORRAL_STATE_DIR", str(tmp_path / "state"))


def test_cleanup_local_with_nothing_recorded() -> None:
    result = CliRunner().invoke(sandbox, ["cleanup", "local"])
    assert result.exit_code == 0, result.output
    assert result.output == "local: nothing to clean\n"


def test_cleanup_of_an_unknown_id_is_an_error_under_asyncio() -> None:
    result = CliRunner().invoke(sandbox, ["cleanup", "local", "abc", "--backend", "asyncio"])
    assert result.exit_code == 1
    assert result.stderr == (
        "local: cleanup failed: no local sandbox 'abc' was left behind by a harness\n"
    )


def test_cleanup_unknown_type() -> None:
    result = CliRunner().invoke(sandbox, ["cleanup", "nope"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "Error: Invalid value for TYPE: unknown sandbox type 'nope'; known types: local, ssh"
        " (see 'sandbox cleanup --help')"
    ]
    assert "Traceback" not in result.output


@pytest.mark.usefixtures("fake_registry")
def test_cleanup_one_type_with_id() -> None:
    result = CliRunner().invoke(sandbox, ["cleanup", "fake", "sample-7"])
    assert result.exit_code == 0, result.output
    assert FakeSandbox.calls == ["sample-7"]
    assert result.output == "fake removed sample-7\nfake: cleanup done\n"


@pytest.mark.usefixtures("fake_registry")
def test_cleanup_without_type_calls_every_provider() -> None:
    result = CliRunner().invoke(sandbox, ["cleanup"])
    assert result.exit_code == 0, result.output
    assert FakeSandbox.calls == [None]
    assert result.stdout == (
        "fake removed everything\nfake: cleanup done\nlocal: nothing to clean\n"
    )
    assert result.stderr.startswith("missing: skipped (")
    assert "corral_no_such_module" in result.stderr


@pytest.mark.usefixtures("fake_registry")
def test_cleanup_failure_is_reported_and_the_others_still_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(FakeSandbox, "fail", True)
    result = CliRunner().invoke(sandbox, ["cleanup"])
    assert result.exit_code == 1
    assert "fake: cleanup failed: the cloud is down" in result.stderr
    assert "local: nothing to clean" in result.stdout


@pytest.mark.usefixtures("fake_registry")
def test_cleanup_of_a_type_that_cannot_be_imported() -> None:
    result = CliRunner().invoke(sandbox, ["cleanup", "missing"])
    assert result.exit_code == 1
    assert "corral_no_such_module" in result.output
    assert "Traceback" not in result.output


def test_cleanup_as_a_real_process() -> None:
    done = run_cli(RUN_SANDBOX, "cleanup", "local")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "local: nothing to clean\n"


# -- check ------------------------------------------------------------------------------


def test_check_needs_pytest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pytest", None)
    result = CliRunner().invoke(sandbox, ["check", "local"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: corral sandbox check needs pytest: pip install pytest"
    ]


def test_check_unknown_type() -> None:
    result = CliRunner().invoke(sandbox, ["check", "nope"])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1
    assert "unknown sandbox type 'nope'" in result.output


def test_check_bad_config_file(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text("{not json", encoding="utf-8")
    result = CliRunner().invoke(sandbox, ["check", "local", "--config", str(config)])
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line.startswith(f"Error: Cannot read the config file '{config}': ")


def test_check_selection_matching_nothing() -> None:
    done = run_cli(RUN_SANDBOX, "check", "local", "-k", "no_such_test")
    assert done.returncode == 1
    assert "0 passed, 0 failed" in done.stdout
    assert "no tests ran" in done.stderr


@pytest.mark.slow
def test_check_local_passes() -> None:
    done = run_cli(RUN_SANDBOX, "check", "local")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "test_concurrent_execs" in done.stdout
    assert "test_text_round_trip" in done.stdout
    assert "trio" in done.stdout
    assert "asyncio" in done.stdout
    rows = [line for line in done.stdout.splitlines() if "│ test_" in line]
    assert len(rows) >= 25  # one row per test, a column per backend
    assert all([cell.strip() for cell in line.split("│")[2:4]] == ["passed"] * 2 for line in rows)
    last = done.stdout.strip().splitlines()[-1]
    assert last.endswith(" passed, 0 failed")
    assert int(last.split()[0]) >= 2 * 25


def test_check_in_process_through_the_runner() -> None:
    result = CliRunner().invoke(
        sandbox, ["check", "local", "--backend", "trio", "-k", "text_round_trip"]
    )
    assert result.exit_code == 0, result.output
    assert "test_text_round_trip" in result.output
    assert result.output.strip().splitlines()[-1] == "1 passed, 0 failed"
    assert ENV_TYPE not in os.environ


def test_check_broken_provider_fails(tmp_path: Path) -> None:
    config = tmp_path / "broken.toml"
    config.write_text("corrupt = true\n", encoding="utf-8")
    done = run_cli(
        BROKEN_PROVIDER,
        "check",
        "broken",
        "--config",
        str(config),
        "-k",
        "text_round_trip or missing_file",
    )
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[-1] == "2 passed, 2 failed"
    header = next(line for line in lines if "Test" in line)
    assert [cell.strip() for cell in header.split("┃")[1:4]] == ["Test", "trio", "asyncio"]
    (row,) = [line for line in lines if "│ test_text_round_trip" in line]
    assert [cell.strip() for cell in row.split("│")[1:4]] == [
        "test_text_round_trip",
        "failed",
        "failed",
    ]
    (row,) = [line for line in lines if "│ test_missing_file" in line]
    assert [cell.strip() for cell in row.split("│")[2:4]] == ["passed", "passed"]
    # The same failure under both backends: one line naming the test and both backends.
    (reason,) = [line for line in lines if "AssertionError" in line]
    assert reason.startswith("failed: test_text_round_trip [trio, asyncio]: ")
    assert "AssertionError: assert '\\ndlrow ,olleh' == 'hello, world\\n'" in reason


def test_check_config_from_json_is_passed_through(tmp_path: Path) -> None:
    config = tmp_path / "broken.json"
    config.write_text('{"corrupt": false}', encoding="utf-8")
    done = run_cli(
        BROKEN_PROVIDER,
        "check",
        "broken",
        "--config",
        str(config),
        "--backend",
        "asyncio",
        "-k",
        "text_round_trip",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "trio" not in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "1 passed, 0 failed"


def test_check_without_config_passes_none(tmp_path: Path) -> None:
    # The provider asserts that it got a config: it cannot be set up, which is said once.
    done = run_cli(BROKEN_PROVIDER, "check", "broken", "--backend", "trio", "-k", "missing_file")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "Error: the sandbox 'broken' could not be set up, so no test ran: AssertionError: None"
    ]


def test_cleanup_that_cannot_reach_a_host_fails_and_keeps_the_record(tmp_path: Path) -> None:
    import json
    import socket

    from corral._core._procfs import boot_id

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead_pid = subprocess.Popen(["true"])  # its pid is no harness's any more
    dead_pid.wait()
    config = {"hosts": [{"host": "127.0.0.1", "port": port}], "connect_timeout": 5}
    entry = {"type": "ssh", "id": "corral-sandbox-x", "dir": "/tmp/x", "tag": "t", "config": config}
    records = tmp_path / "state" / "harnesses"
    records.mkdir(parents=True)
    record = records / f"{boot_id()}-{dead_pid.pid}-1.jsonl"
    header = {"pid": dead_pid.pid, "start": 1, "boot": boot_id(), "argv": []}
    record.write_text(json.dumps({"harness": header}) + "\n" + json.dumps({"add": entry}) + "\n")

    result = CliRunner().invoke(sandbox, ["cleanup", "ssh"])

    assert result.exit_code == 1
    assert result.stderr.startswith("ssh: could not remove corral-sandbox-x: ")
    assert f"127.0.0.1:{port}" in result.stderr
    assert "corral-sandbox-x" in record.read_text()  # kept, for the next run


def test_cleanup_reports_a_damaged_record_and_goes_on(tmp_path: Path) -> None:
    import json

    from corral._core._procfs import boot_id

    dead = subprocess.Popen(["true"])
    dead.wait()
    records = tmp_path / "state" / "harnesses"
    records.mkdir(parents=True)
    header = {"pid": dead.pid, "start": 1, "boot": boot_id(), "argv": []}
    entry = {"type": "ssh", "id": "corral-sandbox-y", "dir": "/tmp/y"}  # no tag, no config
    lines = [{"harness": header}, {"add": entry}]
    (records / "x.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))

    result = CliRunner().invoke(sandbox, ["cleanup", "ssh"])

    assert result.exit_code == 1
    assert result.stderr.startswith("ssh: could not remove corral-sandbox-y: its record is damaged")
    assert "Traceback" not in result.output


def test_check_summary_groups_by_test_with_backends_as_columns() -> None:
    from rich.console import Console

    from corral._cli._sandbox import _details, _Outcome, _table

    setup = "ValueError: the sandbox needs a configuration (_conformance.py:10)"
    ran = [
        _Outcome("test_text_round_trip", "trio", "passed"),
        _Outcome("test_text_round_trip", "asyncio", "failed", "AssertionError: x (f.py:1)"),
        _Outcome("test_cancelled_sample_leaves_no_process_or_directory", "trio", "passed"),
        _Outcome("test_cancelled_sample_leaves_no_process_or_directory", "asyncio", "passed"),
        *(
            _Outcome(f"test_{name}", backend, "error in setup", setup)
            for name in ("a", "b", "c", "d")
            for backend in ("trio", "asyncio")
        ),
        _Outcome("test_only_trio", "trio", "skipped", "needs trio"),
    ]
    buffer = io.StringIO()
    Console(file=buffer, width=80, color_system=None).print(_table("demo", ran))
    lines = buffer.getvalue().splitlines()
    assert all(len(line) <= 80 for line in lines), buffer.getvalue()
    header = next(line for line in lines if "Test" in line)
    assert [cell.strip() for cell in header.split("┃")[1:4]] == ["Test", "trio", "asyncio"]
    rows = {
        cells[0]: cells[1:]
        for line in lines
        if "│ test_" in line
        for cells in [[cell.strip() for cell in line.split("│")[1:4]]]
    }
    assert rows["test_text_round_trip"] == ["passed", "failed"]
    assert rows["test_a"] == ["setup error", "setup error"]
    assert rows["test_only_trio"] == ["skipped", "not run"]
    assert len(rows) == 7  # the long name is folded onto a second line, not cut
    assert "test_cancelled_sample_leaves_no_process_or_directory" in "".join(
        line.split("│")[1].strip() for line in lines if "│" in line
    )
    assert _details(ran) == [
        "failed: test_text_round_trip [asyncio]: AssertionError: x (f.py:1)",
        f"error in setup: test_a [trio, asyncio]; test_b [trio, asyncio]; 2 more tests: {setup}",
        "skipped: test_only_trio [trio]: needs trio",
    ]
