"""subprocess(): results, input and output, environment, errors."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

import corral
from corral.util import ExecResult, concurrency_status, subprocess
from tests.conftest import make_file, open_fd_count, python

pytestmark = pytest.mark.anyio


async def test_list_args_capture_text() -> None:
    result = await subprocess(python("import sys; print('out'); print('err', file=sys.stderr)"))
    assert result == ExecResult(True, 0, "out\n", "err\n")


async def test_str_args_run_through_the_shell() -> None:
    result = await subprocess("echo $((6 * 7)) | tr 4 x")
    assert result.stdout == "x2\n"
    assert result.success


async def test_list_args_are_not_interpreted_by_a_shell(tmp_path: Path) -> None:
    victim = make_file(tmp_path / "victim")
    args = ["; rm -f " + str(victim), "$(rm -f " + str(victim) + ")", "`id`"]
    result = await subprocess(["printf", "%s\\n", *args])
    assert result.stdout.splitlines() == args
    assert victim.exists()


async def test_text_false_returns_bytes() -> None:
    result = await subprocess(
        python("import sys; sys.stdout.buffer.write(bytes(range(256)))"), text=False
    )
    assert result.stdout == bytes(range(256))
    assert result.stderr == b""


async def test_invalid_utf8_is_replaced() -> None:
    result = await subprocess(python("import sys; sys.stdout.buffer.write(b'a\\xffb\\xc3')"))
    assert result.stdout == "a\ufffdb\ufffd"


async def test_nonzero_exit_is_not_an_error() -> None:
    result = await subprocess(python("import sys; sys.exit(3)"))
    assert (result.success, result.returncode) == (False, 3)


async def test_signal_death_gives_negative_returncode() -> None:
    result = await subprocess(python("import os, signal; os.kill(os.getpid(), signal.SIGKILL)"))
    assert result.returncode == -9
    assert result.success is False


@pytest.mark.parametrize("data", ["héllo\n", b"h\xc3\xa9llo\n", memoryview(b"h\xc3\xa9llo\n")])
async def test_input_types(data: str | bytes | memoryview) -> None:
    result = await subprocess(["cat"], input=data)
    assert result.stdout == "héllo\n"


async def test_no_input_gives_empty_stdin() -> None:
    result = await subprocess(python("import sys; print(repr(sys.stdin.read()))"))
    assert result.stdout == "''\n"


async def test_large_input_is_fed_while_output_is_read() -> None:
    """A child that echoes 50 MiB of stdin must not deadlock on full pipes."""
    data = os.urandom(1 << 20) * 50
    result = await subprocess(["cat"], input=data, text=False)
    assert len(result.stdout) == len(data)
    assert result.stdout == data


async def test_child_that_closes_stdin_early_is_fine() -> None:
    result = await subprocess(["head", "-c", "10"], input=b"x" * (8 << 20), text=False)
    assert result.stdout == b"x" * 10
    assert result.success


async def test_child_that_closes_stdout_early() -> None:
    code = "import os, sys; os.close(1); sys.stderr.write('still here'); sys.stderr.flush()"
    result = await subprocess(python(code))
    assert (result.stdout, result.stderr, result.returncode) == ("", "still here", 0)


async def test_child_flooding_only_stderr() -> None:
    code = "import sys; sys.stderr.buffer.write(b'e' * (5 << 20))"
    result = await subprocess(python(code), text=False)
    assert result.stdout == b""
    assert result.stderr == b"e" * (5 << 20)


async def test_env_merges_over_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_TEST_INHERITED", "from-parent")
    code = "import os; print(os.environ['CORRAL_TEST_INHERITED'], os.environ['CORRAL_TEST_ADDED'])"
    result = await subprocess(python(code), env={"CORRAL_TEST_ADDED": "added"})
    assert result.stdout == "from-parent added\n"


async def test_cwd(tmp_path: Path) -> None:
    result = await subprocess(["pwd"], cwd=tmp_path)
    assert result.stdout.strip() == str(tmp_path.resolve())


async def test_capture_output_false_inherits(capfd: pytest.CaptureFixture[str]) -> None:
    result = await subprocess(
        python("import sys; print('to parent'); print('e', file=sys.stderr)"), capture_output=False
    )
    assert (result.stdout, result.stderr) == ("", "")
    captured = capfd.readouterr()
    assert "to parent" in captured.out
    assert "e" in captured.err


@pytest.mark.parametrize("limit", [1, 1000, 65536, 65537, (1 << 20) + 7])
async def test_output_limit_keeps_exactly_the_last_bytes(limit: int) -> None:
    """Not chunk-granular: exactly *limit* trailing bytes, whatever the chunking."""
    # 3 MiB of a non-repeating pattern, written in odd-sized pieces.
    code = (
        "import sys, hashlib\n"
        "data = b''.join(hashlib.sha256(str(i).encode()).digest() for i in range(98304))\n"
        "for i in range(0, len(data), 12345):\n"
        "    sys.stdout.buffer.write(data[i:i + 12345]); sys.stdout.flush()\n"
        "sys.stderr.buffer.write(data)\n"
    )
    import hashlib

    data = b"".join(hashlib.sha256(str(i).encode()).digest() for i in range(98304))
    result = await subprocess(python(code), text=False, output_limit=limit)
    assert result.stdout == data[-limit:]
    assert result.stderr == data[-limit:]
    assert result.success


async def test_output_limit_larger_than_output_keeps_everything() -> None:
    result = await subprocess(["printf", "abc"], output_limit=100)
    assert result.stdout == "abc"


async def test_output_limit_runs_the_child_to_completion() -> None:
    code = "import sys; sys.stdout.write('x' * 1000000); sys.exit(7)"
    result = await subprocess(python(code), output_limit=5)
    assert (result.stdout, result.returncode) == ("xxxxx", 7)


async def test_concurrency_false_takes_no_slot() -> None:
    async with corral.task("t", max_subprocesses=1) as task:
        await subprocess(["true"], concurrency=False)
        assert task.statistics().subprocesses_running == 0
        assert "subprocesses" not in concurrency_status()


# -- errors: raised before anything is changed --------------------------------


async def test_missing_executable_is_named() -> None:
    fds = open_fd_count()
    with pytest.raises(FileNotFoundError, match="no-such-program-xyz"):
        await subprocess(["no-such-program-xyz", "arg"])
    assert open_fd_count() == fds
    assert concurrency_status()["subprocesses"][0] == 0


async def test_non_executable_file_is_a_permission_error(tmp_path: Path) -> None:
    script = make_file(tmp_path / "script.sh", "#!/bin/sh\necho hi\n", executable=False)
    with pytest.raises(PermissionError):
        await subprocess([str(script)])


async def test_missing_cwd_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="nope") as info:
        await subprocess(["true"], cwd=missing)
    assert info.value.filename == str(missing)


async def test_cwd_that_is_a_file_is_named(tmp_path: Path) -> None:
    file = make_file(tmp_path / "file")
    with pytest.raises(NotADirectoryError) as info:
        await subprocess(["true"], cwd=file)
    assert info.value.filename == str(file)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"args": 42}, TypeError, "args must be"),
        ({"args": b"true"}, TypeError, "args must be"),
        ({"args": ["echo", 1]}, TypeError, r"args\[1\]"),
        ({"args": []}, ValueError, "args must not be an empty list"),
        ({"args": "   "}, ValueError, "args must not be an empty command"),
        ({"args": ["true"], "text": "yes"}, TypeError, "text must be a bool"),
        ({"args": ["true"], "input": 5}, TypeError, "input must be"),
        ({"args": ["true"], "cwd": 5}, TypeError, "cwd must be"),
        ({"args": ["true"], "env": ["A=1"]}, TypeError, "env must be a mapping"),
        ({"args": ["true"], "env": {"GOOD": "1", "BAD_KEY": 1}}, TypeError, "env\\['BAD_KEY'\\]"),
        ({"args": ["true"], "env": {1: "x"}}, TypeError, "env keys must be str"),
        ({"args": ["true"], "capture_output": 1}, TypeError, "capture_output"),
        ({"args": ["true"], "output_limit": 0}, ValueError, "output_limit must be > 0"),
        ({"args": ["true"], "output_limit": -5}, ValueError, "output_limit"),
        ({"args": ["true"], "output_limit": 1.5}, TypeError, "output_limit must be an int"),
        ({"args": ["true"], "timeout": -1}, ValueError, "timeout must be >= 0"),
        ({"args": ["true"], "timeout": float("nan")}, ValueError, "timeout"),
        ({"args": ["true"], "timeout": "1"}, TypeError, "timeout must be a number"),
    ],
)
async def test_bad_arguments(kwargs: dict[str, object], exc: type[Exception], match: str) -> None:
    fds = open_fd_count()
    with pytest.raises(exc, match=match):
        await subprocess(**kwargs)  # type: ignore[call-overload]
    assert open_fd_count() == fds
    # Nothing was started, so no limiter was even created.
    assert concurrency_status() == {}


async def test_bad_kill_grace_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_KILL_GRACE", "soon")
    with pytest.raises(ValueError, match="CORRAL_KILL_GRACE"):
        await subprocess(["true"])
    assert concurrency_status() == {}


def test_exec_result_is_a_generic_dataclass() -> None:
    result: ExecResult[bytes] = ExecResult(False, 2, b"o", b"e")
    assert (result.success, result.returncode, result.stdout, result.stderr) == (
        False,
        2,
        b"o",
        b"e",
    )
    result.stdout = b"changed"  # mutable, as in inspect_ai
    assert result.stdout == b"changed"
    assert sys.modules[ExecResult.__module__] is sys.modules["corral.util"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"args": ["echo", "a\0b"]}, r"args\[1\] must not contain a NUL"),
        ({"args": "echo a\0b"}, "args must not contain a NUL"),
        ({"args": ["true"], "cwd": "/tmp\0x"}, "cwd must not contain a NUL"),
        ({"args": ["true"], "env": {"A": "a\0b"}}, r"env\['A'\] must not contain a NUL"),
        ({"args": ["true"], "env": {"A=B": "1"}}, "env key 'A=B' must be non-empty"),
    ],
)
async def test_what_no_command_line_can_carry_is_refused_before_the_slot(
    kwargs: dict[str, Any], match: str
) -> None:
    async with corral.task("t", max_subprocesses=1) as task:
        with pytest.raises(ValueError, match=match):
            await subprocess(**kwargs)
        assert task.statistics().subprocesses_running == 0
        assert (await subprocess(["echo", "ok"])).stdout == "ok\n"
