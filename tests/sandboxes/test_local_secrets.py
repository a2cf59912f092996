"""Issue 12: with ``user=``, the local sandbox puts no env value on a command line.

``sudo -n -u USER -- env K=V ... cmd`` left every value in sudo's
``/proc/PID/cmdline``, which any user can read, for the whole command. The
values now reach a shell run as the user through stdin; these tests run real
commands as another user and, while one runs (held on a FIFO, no sleeps),
read every command line on the machine.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator

import anyio
import pytest

from corral.sandboxes._local import LocalSandboxEnvironment
from corral.util import ExecResult
from tests.support.cmdlines import command_lines_holding, secret_value, shared_directory
from tests.support.fifo import Fifo

pytestmark = pytest.mark.anyio

#: The user the commands run as; root may sudo to it without a rule.
OTHER = "nobody"


@pytest.fixture(scope="module")
def other_user() -> str:
    """A user other than ours that ``sudo -n`` runs commands as (skips otherwise)."""
    sudo = shutil.which("sudo")
    if sudo is None:
        pytest.skip("sudo is not installed")
    probe = subprocess.run([sudo, "-n", "-u", OTHER, "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"cannot sudo -n to {OTHER}: {probe.stderr.decode().strip()}")
    return OTHER


@pytest.fixture
async def local() -> AsyncIterator[LocalSandboxEnvironment]:
    environments = await LocalSandboxEnvironment.sample_init("task", None, {})
    env = environments["default"]
    assert isinstance(env, LocalSandboxEnvironment)
    try:
        yield env
    finally:
        await LocalSandboxEnvironment.sample_cleanup("task", None, environments, False)


@pytest.fixture
def fifos() -> Iterator[tuple[Fifo, Fifo]]:
    """A readiness FIFO and a gate FIFO that another user's command can open."""
    with shared_directory() as directory:
        ready = Fifo(directory / "ready", shared=True)
        gate = Fifo(directory / "gate", shared=True)
        try:
            yield ready, gate
        finally:
            ready.close()
            gate.close()


async def _while_blocked(
    local: LocalSandboxEnvironment,
    fifos: tuple[Fifo, Fifo],
    after: str,
    env: dict[str, str],
    token: str,
) -> tuple[ExecResult[str], dict[int, bytes]]:
    """Run ``sh -c`` as the other user, held on the gate; scan /proc, release it, then *after*."""
    ready, gate = fifos
    script = f"{ready.shell_ready()}; read _ < '{gate.path}'; {after}"
    results: list[ExecResult[str]] = []

    async def run() -> None:
        results.append(await local.exec(["sh", "-c", script], env=env, user=OTHER, cwd="/"))

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await ready.wait()
        seen = command_lines_holding(token)
        gate.release()
    return results[0], seen


async def test_env_values_are_on_no_command_line(
    local: LocalSandboxEnvironment, other_user: str, fifos: tuple[Fifo, Fifo]
) -> None:
    """The values are in no /proc/*/cmdline while the command runs, and it sees them exactly."""
    value, token = secret_value()
    # ``n`` and ``e`` are the names the reading shell uses for itself.
    env = {"SECRET": value, "n": "N", "e": "E", "PATH": "/usr/bin:/bin"}
    after = "printenv SECRET n e; id -un; printenv CORRAL_LOCAL_SANDBOX >/dev/null"
    result, seen = await _while_blocked(local, fifos, after, env, token)
    assert seen == {}
    assert result == ExecResult(True, 0, f"{value}\nN\nE\n{other_user}\n", "")


async def test_input_follows_the_env_and_no_input_is_dev_null(
    local: LocalSandboxEnvironment, other_user: str
) -> None:
    value, _ = secret_value()
    text = "first line\n-second 'line'\nno newline at the end"
    fed = await local.exec(["cat"], input=text, env={"SECRET": value}, user=other_user, cwd="/")
    assert fed == ExecResult(True, 0, text, "")
    # No input: the command reads /dev/null (a cat returns at once), as without env.
    script = "readlink /proc/$$/fd/0; cat; printenv SECRET"
    for input in (None, ""):
        bare = await local.exec(
            ["sh", "-c", script], input=input, env={"SECRET": value}, user=other_user, cwd="/"
        )
        assert bare == ExecResult(True, 0, f"/dev/null\n{value}\n", "")


async def test_empty_and_large_env(
    local: LocalSandboxEnvironment, other_user: str, fifos: tuple[Fifo, Fifo]
) -> None:
    empty = await local.exec(["sh", "-c", "printenv CORRAL_LOCAL_SANDBOX"], env={}, user=OTHER)
    assert empty.success
    assert empty.stdout.strip()
    value, token = secret_value()
    big = value + "x" * (100 * 1024)
    env = {f"V{i}": f"value {i} {value}" for i in range(200)} | {"BIG": big}
    after = "printenv BIG | wc -c; printenv V0 V199; cat"
    result, seen = await _while_blocked(local, fifos, after, env, token)
    assert seen == {}
    assert result.returncode == 0, result.stderr
    size = len(big.encode()) + 1
    assert result.stdout == f"{size}\nvalue 0 {value}\nvalue 199 {value}\n"


def test_program_missing_after_the_env_is_read(other_user: str) -> None:
    """The reading shell's ``exec`` reports a missing program as ``env`` did: status 127."""
    from corral.sandboxes._ssh._script import env_reader_argv, export_line

    argv = env_reader_argv(["corral-no-such-program"], tags={}, stdin=False)
    done = subprocess.run(argv, input=export_line({"A": "1"}), capture_output=True, check=False)
    assert done.returncode == 127
    assert b"corral-no-such-program" in done.stderr


#: The POSIX shells on this machine (dash and bash at least), each a login shell a host may have.
_SHELLS = [
    (shell, path)
    for shell in ("dash", "bash", "zsh", "ksh", "mksh", "busybox")
    if (path := shutil.which(shell)) is not None
]


@pytest.mark.parametrize(("shell", "path"), _SHELLS, ids=[shell for shell, _ in _SHELLS])
def test_every_posix_shell_reads_the_line(shell: str, path: str) -> None:
    """Over SSH the login shell reads the line itself: any POSIX shell must get it right."""
    from corral.sandboxes._ssh._script import env_reader_argv, export_line

    value, _ = secret_value()
    env = {"SECRET": value, "n": "N", "e": "E", "IFS": "x"}
    tags = {"CORRAL_TAG": "t 1"}
    argv = env_reader_argv(
        ["printenv", "SECRET", "n", "e", "IFS", "CORRAL_TAG"], tags=tags, stdin=False
    )
    argv[0:1] = [path, "sh"] if shell == "busybox" else [path]
    done = subprocess.run(argv, input=export_line(env) + b"rest", capture_output=True, check=False)
    assert (done.returncode, done.stderr) == (0, b"")
    assert done.stdout.decode() == f"{value}\nN\nE\nx\nt 1\n"


def test_export_line_refuses_what_the_shell_would_misread() -> None:
    from corral.sandboxes._ssh._script import export_line

    with pytest.raises(ValueError, match="'A;B'"):
        export_line({"A;B": "x"})
    with pytest.raises(ValueError, match="NUL"):
        export_line({"A": "x\0y"})
    assert export_line({"A": "it's\n"}) == b"export A='it'\\''s'\"$n\"''\n"


async def test_cancellation_still_kills_a_command_given_env(
    local: LocalSandboxEnvironment, other_user: str, fifos: tuple[Fifo, Fifo]
) -> None:
    """The shell that reads the variables ``exec``\\ s the command: the group kill still gets it."""
    ready, _ = fifos
    marker = f"300.{secrets.randbelow(10**8):08d}"
    command = ["sh", "-c", f"{ready.shell_ready()}; sleep {marker}"]
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: local.exec(command, env={"A": "1"}, user=other_user, cwd="/"))
        await ready.wait()
        tg.cancel_scope.cancel()
    assert command_lines_holding(marker) == {}
