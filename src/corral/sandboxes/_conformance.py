"""The conformance suite every sandbox provider runs against itself (see ``testing``).

The suite is a pytest base class, :class:`SandboxConformance`, whose tests
take one fixture, ``sandbox_env``: a fresh :class:`SandboxEnvironment` for
each test. A provider subclasses it in a test module and names itself
(``provider = MySandbox``: the fixture then creates each environment the way
the runtime does, ``sample_init``, and releases it, ``sample_cleanup``), or
overrides the fixture to do that its own way; the suite calls it through
the sandbox proxy, as samples do, since the proxy owns the rules every
provider obeys (argument checks, ``timeout=``, output limits)::

    # tests/test_conformance_mine.py
    from corral.sandboxes.testing import SandboxConformance

    from mypackage import MySandbox


    class TestMySandbox(SandboxConformance):
        provider = MySandbox

Every test is async and runs under each backend the module's
``anyio_backend`` fixture yields (anyio 4.16's default is every installed
backend, trio and asyncio with corral's dependencies; with an anyio whose
default is asyncio only, define ``anyio_backend`` with
``params=["trio", "asyncio"]`` in a ``conftest.py``). The tests need ``sh``,
``cat``, ``printf``, ``pwd``, ``wc``, ``sleep``, ``yes``, ``test``, ``chmod``,
``mkfifo`` and ``grep`` inside the sandbox, and a Linux ``/proc`` to look for
leftover processes. A provider whose sandbox differs overrides the hooks:

* :meth:`~SandboxConformance.live_processes` (how leftover processes are found),
  :meth:`~SandboxConformance.sleeper` (a long command that can be found so),
  :meth:`~SandboxConformance.make_fifo`,
  :attr:`~SandboxConformance.unreadable_path` and
  :attr:`~SandboxConformance.unwritable_path`;
* the ``sample_config`` fixture: the ``config`` the tests that start a
  sample of their own pass to ``sample_init`` (``None`` unless overridden;
  a provider that needs a config must override it, with the one its
  ``sandbox_env`` uses);
* :attr:`~SandboxConformance.lacks`: what the sandbox does not have at all
  (a POSIX shell, special files, file permissions, native ``exec_remote``
  streaming). Each test that needs one
  of them is then skipped, with a reason naming the declaration, so that the
  skip shows in the report; nothing is skipped otherwise.

This module imports pytest: it is imported only by :mod:`corral.sandboxes.testing`,
which is meant for test suites.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import anyio
import anyio.lowlevel
import pytest

from .._core._settings import subprocess_limiter
from ._conformance_stream import StreamingConformance
from ._environment import SandboxConnection, SandboxEnvironment
from ._errors import OutputLimitExceededError, SandboxTimeoutError
from ._output_limits import override_sandbox_output_limit
from ._proxy import SandboxEnvironmentProxy

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

__all__ = ["SandboxConformance"]

_MIB = 1024 * 1024

#: What a sandbox may lack (see :attr:`SandboxConformance.lacks`).
Capability = Literal["posix_shell", "special_files", "file_permissions", "native_streaming"]

_CAPABILITIES: dict[Capability, str] = {
    "posix_shell": "POSIX shell and tools (sh -c with pipes, wc, head, chmod, ...)",
    "special_files": "special files (FIFOs)",
    "file_permissions": "file permissions that refuse even root",
    "native_streaming": "native exec_remote streaming (output before the command ends)",
}

#: One refused NUL per argument position: the call, and what the message names.
_NUL_CALLS: dict[str, tuple[Any, str]] = {
    "cmd[0]": (lambda env: env.exec(["ec\0ho", "x"]), r"cmd\[0\] must not contain a NUL"),
    "cmd[2]": (lambda env: env.exec(["echo", "x", "y\0"]), r"cmd\[2\] must not contain a NUL"),
    "cwd": (lambda env: env.exec(["true"], cwd="sub\0dir"), "cwd must not contain a NUL"),
    "user": (lambda env: env.exec(["true"], user="\0root"), "user must not contain a NUL"),
    "env key": (lambda env: env.exec(["true"], env={"A\0B": "1"}), r"env key 'A\\x00B'"),
    "env value": (
        lambda env: env.exec(["true"], env={"A": "1\0"}),
        r"env\['A'\] must not contain a NUL",
    ),
    "write_file": (lambda env: env.write_file("f\0.txt", "x"), "file must not contain a NUL"),
    "read_file": (lambda env: env.read_file("f\0.txt"), "file must not contain a NUL"),
}


def _payload(size: int) -> bytes:
    """*size* bytes of every value, including NUL and invalid UTF-8, cheap to make."""
    block = secrets.token_bytes(64 * 1024) + bytes(range(256))
    return (block * (size // len(block) + 1))[:size]


def _marker() -> str:
    """A number of seconds no other command uses, so its processes can be told apart."""
    return f"300.{secrets.randbelow(10**8):08d}"


@pytest.mark.anyio
class SandboxConformance(StreamingConformance):
    """The behaviour every :class:`SandboxEnvironment` promises, as pytest tests.

    Subclass it (with a name pytest collects, ``Test...``) and override the
    ``sandbox_env`` fixture; see the module's documentation.

    Attributes:
        unreadable_path: An existing file that ``read_file`` cannot read,
            even as root. A write-only sysfs attribute: the kernel refuses
            to open it for reading whatever the caller's privileges.
        unwritable_path: An existing file that ``write_file`` cannot write,
            even as root. A read-only sysfs attribute, refused at ``open``,
            so nothing is ever written to it.
        provider: The provider under test: ``class TestMine(SandboxConformance):
            provider = MySandbox`` is the whole test module's class. The
            ``sandbox_env`` fixture then makes each environment with its
            ``sample_init`` (and the ``sample_config`` fixture).
        lacks: What the sandbox does not have, among ``"posix_shell"``,
            ``"special_files"``, ``"file_permissions"`` and
            ``"native_streaming"`` (a provider on ``exec_remote``'s slow
            path): the tests that
            need it are skipped, saying so. Empty (nothing skipped) by default.
    """

    unreadable_path: ClassVar[str] = "/sys/bus/platform/uevent"
    unwritable_path: ClassVar[str] = "/sys/devices/system/cpu/online"
    lacks: ClassVar[frozenset[Capability]] = frozenset()
    provider: ClassVar[type[SandboxEnvironment] | None] = None

    @pytest.fixture
    async def sandbox_env(self, sample_config: Any) -> AsyncIterator[SandboxEnvironment]:
        """The environment under test.

        With :attr:`provider` set, one made by its ``sample_init`` (with the
        ``sample_config`` fixture) and released by its ``sample_cleanup``;
        otherwise a provider's subclass overrides this fixture.
        """
        provider = self.provider
        if provider is None:
            raise NotImplementedError(
                f"{type(self).__name__} must set 'provider' to its SandboxEnvironment class, "
                "or override the 'sandbox_env' fixture (see corral.sandboxes.testing)"
            )
        environments = await provider.sample_init("conformance", sample_config, {})
        try:
            yield next(iter(environments.values()))
        finally:
            await provider.sample_cleanup("conformance", sample_config, environments, False)

    @pytest.fixture
    def sandbox(self, sandbox_env: SandboxEnvironment) -> SandboxEnvironment:
        """The environment under test as samples see it: wrapped in the sandbox proxy.

        The proxy owns the contract's rules (argument checks, ``timeout=``,
        output limits), so the suite checks them through it.
        """
        return SandboxEnvironmentProxy(sandbox_env)

    @pytest.fixture
    def sample_config(self) -> Any:
        """The ``config`` for ``sample_init`` in tests that start a sample of their own.

        ``None``; a provider that needs a config overrides this fixture.
        """
        return None

    def requires(self, *needs: Capability) -> None:
        """Skip the running test if the provider declares, in :attr:`lacks`, one of *needs*."""
        missing = [need for need in needs if need in self.lacks]
        if missing:
            what = "; ".join(_CAPABILITIES[need] for need in missing)
            pytest.skip(f"{type(self).__name__}.lacks declares the sandbox has no {what}")

    async def live_processes(self, env: SandboxEnvironment, marker: str) -> list[str]:
        """Paths of ``/proc/PID/cmdline`` files in the sandbox that contain *marker*.

        *env* is a usable environment on the same host, not necessarily the
        one the processes were started in (that one may be cleaned up). The
        marker is passed to ``grep`` in a file, so the search does not find
        itself; zombies have an empty command line and are not found.
        """
        await env.write_file("conformance-marker", marker)
        result = await env.exec(
            ["sh", "-c", "grep -lsF -f conformance-marker /proc/[0-9]*/cmdline; true"]
        )
        return result.stdout.split()

    def sleeper(self, marker: str) -> list[str]:
        """A command that runs for minutes, whose every process :meth:`live_processes` finds.

        *marker* is a number of seconds (``"300.NNNNNNNN"``) found on no
        other command line. By default a shell with a background child, so
        that stopping the command must stop its whole process group.
        """
        return ["sh", "-c", f"sleep {marker} & sleep {marker}; wait"]

    async def make_fifo(self, env: SandboxEnvironment, path: str) -> None:
        """Make a FIFO (named pipe) at *path* in the sandbox, with ``mkfifo``."""
        result = await env.exec(["mkfifo", path])
        assert result.returncode == 0, result.stderr

    async def wait_running(self, env: SandboxEnvironment, marker: str) -> None:
        """Return once a process with *marker* runs: each look is a call, not a sleep."""
        while not await self.live_processes(env, marker):
            await anyio.lowlevel.checkpoint()

    async def cancel_once_running(
        self, env: SandboxEnvironment, marker: str, work: Callable[[], Awaitable[object]]
    ) -> bool:
        """Run ``work()``, cancelled from outside once a process with *marker* runs.

        Returns:
            Whether the cancellation was what ended it.
        """

        async def cancel(scope: anyio.CancelScope) -> None:
            await self.wait_running(env, marker)
            scope.cancel()

        async with anyio.create_task_group() as tg:
            with anyio.CancelScope() as scope:
                tg.start_soon(cancel, scope)
                await work()
        return scope.cancelled_caught

    async def pwd(self, env: SandboxEnvironment, cwd: str | None = None) -> str:
        """The sandbox's working directory for a command (its default, or *cwd*)."""
        result = await env.exec(["pwd"], cwd=cwd)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    # -- files ------------------------------------------------------------

    async def test_text_round_trip(self, sandbox: SandboxEnvironment) -> None:
        await sandbox.write_file("hello.txt", "hello, world\n")
        assert await sandbox.read_file("hello.txt") == "hello, world\n"
        assert await sandbox.read_file("hello.txt", text=False) == b"hello, world\n"

    async def test_binary_round_trip(self, sandbox: SandboxEnvironment) -> None:
        data = bytes(range(256)) * 4
        await sandbox.write_file("data.bin", data)
        assert await sandbox.read_file("data.bin", text=False) == data

    async def test_large_round_trip(self, sandbox: SandboxEnvironment) -> None:
        self.requires("posix_shell")
        data = _payload(50 * _MIB)
        await sandbox.write_file("big.bin", data)
        assert (await sandbox.exec(["wc", "-c", "big.bin"])).stdout.split()[0] == str(len(data))
        assert await sandbox.read_file("big.bin", text=False) == data

    async def test_utf8_text_keeps_newlines(self, sandbox: SandboxEnvironment) -> None:
        text = "naïve café — 日本語 🐍\r\nsecond line\rthird\n"
        await sandbox.write_file("utf8.txt", text)
        assert await sandbox.read_file("utf8.txt", text=False) == text.encode("utf-8")
        assert await sandbox.read_file("utf8.txt") == text

    async def test_relative_path_creates_parents(self, sandbox: SandboxEnvironment) -> None:
        await sandbox.write_file("a/b/c/file.txt", "nested")
        assert await sandbox.read_file("a/b/c/file.txt") == "nested"
        # Relative paths resolve in the directory commands start in.
        assert (await sandbox.exec(["cat", "a/b/c/file.txt"])).stdout == "nested"

    async def test_absolute_path_creates_parents(self, sandbox: SandboxEnvironment) -> None:
        path = f"{await self.pwd(sandbox)}/abs/x/y.txt"
        await sandbox.write_file(path, "absolute")
        assert await sandbox.read_file(path) == "absolute"
        assert await sandbox.read_file("abs/x/y.txt") == "absolute"

    async def test_zero_length_files(self, sandbox: SandboxEnvironment) -> None:
        await sandbox.write_file("empty.txt", "")
        await sandbox.write_file("empty.bin", b"")
        assert await sandbox.read_file("empty.txt") == ""
        assert await sandbox.read_file("empty.bin", text=False) == b""

    async def test_overwrite_replaces_contents(self, sandbox: SandboxEnvironment) -> None:
        await sandbox.write_file("over.txt", "a much longer first version\n")
        await sandbox.write_file("over.txt", "short")
        assert await sandbox.read_file("over.txt") == "short"
        await sandbox.write_file("over.txt", b"\x00bytes")
        assert await sandbox.read_file("over.txt", text=False) == b"\x00bytes"

    async def test_missing_file(self, sandbox: SandboxEnvironment) -> None:
        with pytest.raises(FileNotFoundError) as info:
            await sandbox.read_file("no/such/file.txt")
        assert "no/such/file.txt" in str(info.value)

    async def test_read_directory(self, sandbox: SandboxEnvironment) -> None:
        await sandbox.write_file("adir/inside.txt", "x")
        with pytest.raises(IsADirectoryError) as info:
            await sandbox.read_file("adir")
        assert "adir" in str(info.value)

    async def test_write_onto_directory(self, sandbox: SandboxEnvironment) -> None:
        await sandbox.write_file("bdir/inside.txt", "x")
        with pytest.raises(IsADirectoryError) as info:
            await sandbox.write_file("bdir", "y")
        assert "bdir" in str(info.value)
        assert await sandbox.read_file("bdir/inside.txt") == "x"

    async def test_read_permission_denied(self, sandbox: SandboxEnvironment) -> None:
        self.requires("file_permissions")
        with pytest.raises(PermissionError) as info:
            await sandbox.read_file(self.unreadable_path)
        assert self.unreadable_path in str(info.value)

    async def test_write_permission_denied(self, sandbox: SandboxEnvironment) -> None:
        self.requires("file_permissions")
        with pytest.raises(PermissionError) as info:
            await sandbox.write_file(self.unwritable_path, "0")
        assert self.unwritable_path in str(info.value)

    async def test_read_fifo_is_refused_promptly(self, sandbox: SandboxEnvironment) -> None:
        """``read_file`` of a FIFO with no writer is refused, or bounded: it does not hang."""
        self.requires("special_files")
        await self.make_fifo(sandbox, "conformance.fifo")
        with anyio.fail_after(15):
            with pytest.raises(OSError, match=r"conformance\.fifo"):
                await sandbox.read_file("conformance.fifo")
        await sandbox.write_file("after-fifo.txt", "fine")
        assert await sandbox.read_file("after-fifo.txt") == "fine"

    async def test_write_fifo_is_refused_promptly(self, sandbox: SandboxEnvironment) -> None:
        """``write_file`` onto a FIFO with no reader is refused, or bounded: it does not hang."""
        self.requires("special_files")
        await self.make_fifo(sandbox, "conformance-w.fifo")
        with anyio.fail_after(15):
            with pytest.raises(OSError, match=r"conformance-w\.fifo"):
                await sandbox.write_file("conformance-w.fifo", "into a pipe")
        assert (await sandbox.exec(["echo", "after"])).stdout == "after\n"

    async def test_exec_not_executable(self, sandbox: SandboxEnvironment) -> None:
        self.requires("posix_shell", "file_permissions")
        # A file without any execute bit cannot be run, even by root.
        await sandbox.write_file("script.sh", "#!/bin/sh\necho hi\n")
        await sandbox.exec(["chmod", "644", "script.sh"])
        path = f"{await self.pwd(sandbox)}/script.sh"
        with pytest.raises(PermissionError):
            await sandbox.exec([path])

    async def test_invalid_utf8(self, sandbox: SandboxEnvironment) -> None:
        await sandbox.write_file("bad.txt", b"ok \xff\xfe not utf-8")
        with pytest.raises(UnicodeDecodeError):
            await sandbox.read_file("bad.txt")
        assert await sandbox.read_file("bad.txt", text=False) == b"ok \xff\xfe not utf-8"

    async def test_bad_arguments_name_the_parameter(self, sandbox: SandboxEnvironment) -> None:
        env: Any = sandbox  # called as untyped code would call it
        bad: list[tuple[Any, type[Exception], str]] = [
            (lambda: env.exec(["echo", 1]), TypeError, r"cmd\[1\] must be a str"),
            (lambda: env.exec("echo hi"), TypeError, "cmd must be a list"),
            (lambda: env.exec([]), ValueError, "cmd must not be an empty list"),
            (lambda: env.exec(["true"], input=3), TypeError, "input must be str, bytes"),
            (lambda: env.exec(["true"], env={"A": 1}), TypeError, r"env\['A'\]"),
            (lambda: env.exec(["true"], timeout=-1), ValueError, "timeout must be >= 0"),
            (lambda: env.exec(["true"], timeout=float("nan")), ValueError, "timeout must be"),
            (lambda: env.write_file(5, "x"), TypeError, "file must be a str"),
            (lambda: env.write_file("f", 5), TypeError, "contents must be str or bytes"),
            (lambda: env.read_file(5), TypeError, "file must be a str"),
            # What a model may send: refused before anything reaches the provider.
            (lambda: env.exec(["echo", "a\0b"]), ValueError, r"cmd\[1\] must not contain a NUL"),
            (lambda: env.exec(["ec\0ho"]), ValueError, r"cmd\[0\] must not contain a NUL"),
            (lambda: env.exec(["A=B", "true"]), ValueError, r"cmd\[0\] must not contain '='"),
            (lambda: env.exec(["true"], cwd="/\0"), ValueError, "cwd must not contain a NUL"),
            (lambda: env.exec(["true"], user="a\0b"), ValueError, "user must not contain a NUL"),
            (lambda: env.exec(["true"], env={"A": "\0"}), ValueError, r"env\['A'\] must not"),
            (
                lambda: env.exec(["true"], env={"-S/bin/echo X #": "1"}),
                ValueError,
                "shell variable",
            ),
            (lambda: env.exec(["true"], env={"1A": "1"}), ValueError, "shell variable"),
            (lambda: env.write_file("f\0g", "x"), ValueError, "file must not contain a NUL"),
            (lambda: env.read_file("f\0g"), ValueError, "file must not contain a NUL"),
        ]
        for call, error, match in bad:
            with pytest.raises(error, match=match):
                await call()
        with pytest.raises(FileNotFoundError):
            await sandbox.read_file("f")  # nothing was written by the refused write_file
        # And the provider works on, for this sample and so for the others.
        assert (await sandbox.exec(["echo", "still here"])).stdout == "still here\n"
        await sandbox.write_file("g", "fine")
        assert await sandbox.read_file("g") == "fine"

    # -- exec ---------------------------------------------------------------

    async def test_exec_output_and_returncode(self, sandbox: SandboxEnvironment) -> None:
        self.requires("posix_shell")
        result = await sandbox.exec(
            ["sh", "-c", "printf 'to out\\n'; printf 'to err\\n' >&2; exit 3"]
        )
        assert (result.success, result.returncode) == (False, 3)
        assert result.stdout == "to out\n"
        assert result.stderr == "to err\n"
        ok = await sandbox.exec(["true"])
        assert (ok.success, ok.returncode, ok.stdout, ok.stderr) == (True, 0, "", "")

    async def test_exec_output_is_decoded_with_replacement(
        self, sandbox: SandboxEnvironment
    ) -> None:
        result = await sandbox.exec(["printf", "caf\\303\\251 \\377"])
        assert result.stdout == "café \ufffd"

    async def test_exec_timeout_leaves_no_process(self, sandbox: SandboxEnvironment) -> None:
        marker = _marker()
        with anyio.fail_after(30):
            with pytest.raises(SandboxTimeoutError) as info:
                await sandbox.exec(self.sleeper(marker), timeout=0.5)
        assert isinstance(info.value, TimeoutError)
        assert await self.live_processes(sandbox, marker) == []

    async def test_timeout_keeps_partial_output(self, sandbox: SandboxEnvironment) -> None:
        """What a command printed before its timeout is in ``truncated_output``."""
        marker = _marker()
        with anyio.fail_after(30):
            with pytest.raises(SandboxTimeoutError) as info:
                await sandbox.exec(
                    ["sh", "-c", f"echo printed-{marker}; sleep {marker}"], timeout=1
                )
        assert info.value.truncated_output is not None
        assert f"printed-{marker}\n" in info.value.truncated_output
        assert await self.live_processes(sandbox, marker) == []

    async def test_cancelled_exec_leaves_no_process(self, sandbox: SandboxEnvironment) -> None:
        """An exec cancelled from outside (not by its timeout) stops all it started."""
        marker = _marker()

        with anyio.fail_after(60):
            cancelled = await self.cancel_once_running(
                sandbox, marker, lambda: sandbox.exec(self.sleeper(marker))
            )
        assert cancelled
        assert await self.live_processes(sandbox, marker) == []
        assert (await sandbox.exec(["echo", "after"])).stdout == "after\n"

    async def test_cancelled_sample_leaves_no_process_or_directory(
        self, sandbox: SandboxEnvironment, sandbox_env: SandboxEnvironment, sample_config: Any
    ) -> None:
        """A sample cancelled mid-exec, then cleaned up, leaves no process and no directory.

        The sample is one of the test's own, made with ``sample_init`` and
        ``sample_cleanup(..., interrupted=True)`` (in a shielded scope) as the
        runtime does; its processes and its working directory (what ``pwd``
        printed in it) are looked for afterwards from the ``sandbox_env``
        sample, on the same host.
        """
        provider = type(sandbox_env)
        marker = _marker()

        async def cancel_once_running(scope: anyio.CancelScope) -> None:
            await self.wait_running(sandbox, marker)
            scope.cancel()

        with anyio.fail_after(60):
            with anyio.CancelScope() as sample:
                environments = await provider.sample_init("conformance", sample_config, {})
                try:
                    env = SandboxEnvironmentProxy(next(iter(environments.values())))
                    workdir = await self.pwd(env)
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(cancel_once_running, sample)
                        await env.exec(self.sleeper(marker))
                finally:
                    with anyio.CancelScope(shield=True):
                        await provider.sample_cleanup(
                            "conformance", sample_config, environments, True
                        )
        assert sample.cancelled_caught
        assert await self.live_processes(sandbox, marker) == []
        assert (await sandbox.exec(["test", "-e", workdir])).returncode == 1, workdir

    @pytest.mark.parametrize("position", list(_NUL_CALLS))
    async def test_nul_is_refused_by_name(self, sandbox: SandboxEnvironment, position: str) -> None:
        """A NUL anywhere but ``input`` is a ``ValueError`` naming where; the sandbox works on."""
        call, match = _NUL_CALLS[position]
        with pytest.raises(ValueError, match=match):
            await call(sandbox)
        result = await sandbox.exec(["cat"], input=b"NUL \0 in input is data")
        assert (result.returncode, result.stdout) == (0, "NUL \0 in input is data")

    async def test_endless_output_is_stopped(self, sandbox: SandboxEnvironment) -> None:
        """A command that writes for ever, with no timeout, is stopped at the output limit."""
        marker = _marker()
        word = f"endless-{marker}"
        with (
            override_sandbox_output_limit(64 * 1024, "exec"),
            anyio.fail_after(30),
            pytest.raises(OutputLimitExceededError) as info,
        ):
            await sandbox.exec(["yes", word])
        kept = info.value.truncated_output
        assert kept is not None
        assert 0 < len(kept.encode("utf-8")) <= 64 * 1024
        first, *whole, last = kept.split("\n")
        assert whole, "the kept tail holds whole lines"
        assert set(whole) == {word}
        assert word.endswith(first)
        assert word.startswith(last)
        assert await self.live_processes(sandbox, marker) == []

    async def test_exec_env(self, sandbox: SandboxEnvironment) -> None:
        self.requires("posix_shell")
        result = await sandbox.exec(
            ["sh", "-c", 'printf "%s|%s" "$CONFORMANCE_A" "$CONFORMANCE_B"'],
            env={"CONFORMANCE_A": "one", "CONFORMANCE_B": "two words = ok"},
        )
        assert result.stdout == "one|two words = ok"

    async def test_stdin_text(self, sandbox: SandboxEnvironment) -> None:
        result = await sandbox.exec(["cat"], input="line one\nligne deux é\n")
        assert result.stdout == "line one\nligne deux é\n"

    async def test_stdin_empty(self, sandbox: SandboxEnvironment) -> None:
        self.requires("posix_shell")
        for data in ("", b"", None):
            result = await sandbox.exec(["wc", "-c"], input=data)
            assert result.stdout.split() == ["0"]

    async def test_stdin_binary(self, sandbox: SandboxEnvironment) -> None:
        self.requires("posix_shell")
        data = b"nul\x00byte \xff\xfe invalid \x80 utf-8\n"
        result = await sandbox.exec(["cat"], input=data)
        assert result.stdout == data.decode("utf-8", errors="replace")
        # Through a file, to check the exact bytes arrived.
        await sandbox.exec(["sh", "-c", "cat > stdin.bin"], input=data)
        assert await sandbox.read_file("stdin.bin", text=False) == data

    async def test_stdin_large(self, sandbox: SandboxEnvironment) -> None:
        self.requires("posix_shell")
        data = _payload(50 * _MIB)
        result = await sandbox.exec(["wc", "-c"], input=data)
        assert result.stdout.split() == [str(len(data))]

    async def test_large_argv(self, sandbox: SandboxEnvironment) -> None:
        self.requires("posix_shell")
        # 1 MiB in all, in arguments under the kernel's 128 KiB per-argument limit.
        args = [chr(ord("a") + i) * (64 * 1024) for i in range(16)]
        result = await sandbox.exec(["sh", "-c", 'printf %s "$@" | wc -c', "sh", *args])
        assert result.stdout.split() == [str(_MIB)]
        last = await sandbox.exec(["sh", "-c", 'printf %s "${16}" | head -c 3', "sh", *args])
        assert last.stdout == "ppp"

    async def test_cwd(self, sandbox: SandboxEnvironment) -> None:
        default = await self.pwd(sandbox)
        assert default.startswith("/")
        await sandbox.write_file("sub/dir/f.txt", "x")
        assert await self.pwd(sandbox, "sub/dir") == f"{default}/sub/dir"
        assert await self.pwd(sandbox, f"{default}/sub") == f"{default}/sub"
        assert await self.pwd(sandbox, "/") == "/"
        # The default did not move.
        assert await self.pwd(sandbox) == default

    async def test_exec_output_limit(self, sandbox: SandboxEnvironment) -> None:
        self.requires("posix_shell")
        with override_sandbox_output_limit(1024, "exec"):
            exact = await sandbox.exec(["sh", "-c", "head -c 1024 /dev/zero | tr '\\0' a"])
            assert exact.stdout == "a" * 1024
            with pytest.raises(OutputLimitExceededError) as info:
                await sandbox.exec(["sh", "-c", "head -c 4000 /dev/zero | tr '\\0' a; printf END"])
            assert "1 KiB" in str(info.value)
            kept = info.value.truncated_output
            assert kept is not None
            # The tail of what it printed when it was stopped: a built-in provider stops
            # it as soon as the stream passes the limit, so "END" may never come.
            assert 0 < len(kept) <= 1024
            assert kept in "a" * 4000 + "END"
            with pytest.raises(OutputLimitExceededError):
                await sandbox.exec(["sh", "-c", "head -c 4000 /dev/zero >&2"])

    async def test_read_file_limit(self, sandbox: SandboxEnvironment) -> None:
        await sandbox.write_file("at-limit.txt", "a" * 1024)
        await sandbox.write_file("over-limit.txt", "a" * 1025)
        with override_sandbox_output_limit(1024, "read_file"):
            assert await sandbox.read_file("at-limit.txt") == "a" * 1024
            with pytest.raises(OutputLimitExceededError) as info:
                await sandbox.read_file("over-limit.txt")
            assert info.value.truncated_output is None

    async def test_concurrent_execs(self, sandbox: SandboxEnvironment) -> None:
        self.requires("posix_shell")
        results: dict[int, tuple[str, str]] = {}

        async def run(i: int) -> None:
            result = await sandbox.exec(
                ["sh", "-c", 'printf "out-%s-" "$1"; cat; printf "err-%s" "$1" >&2', "sh", str(i)],
                input=f"in-{i}",
            )
            results[i] = (result.stdout, result.stderr)

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for i in range(32):
                    tg.start_soon(run, i)
        assert results == {i: (f"out-{i}-in-{i}", f"err-{i}") for i in range(32)}

    # -- the rest of the contract -----------------------------------------

    async def test_as_type(self, sandbox_env: SandboxEnvironment) -> None:
        proxy = SandboxEnvironmentProxy(sandbox_env)
        provider = type(sandbox_env)
        assert sandbox_env.as_type(provider) is sandbox_env
        assert sandbox_env.as_type(SandboxEnvironment) is sandbox_env  # type: ignore[type-abstract]
        assert proxy.as_type(provider) is sandbox_env

        class Unrelated(SandboxEnvironmentProxy):
            pass

        for env in (sandbox_env, proxy):
            with pytest.raises(TypeError) as info:
                env.as_type(Unrelated)
            assert "Unrelated" in str(info.value)
            assert provider.__name__ in str(info.value)

    async def test_connection_default_user(self, sandbox: SandboxEnvironment) -> None:
        """``connection()`` and ``connection(user=None)`` agree, or the provider offers none."""
        try:
            connection = await sandbox.connection()
        except NotImplementedError:
            with pytest.raises(NotImplementedError):
                await sandbox.connection(user=None)
            return
        assert isinstance(connection, SandboxConnection)
        assert connection.command
        assert await sandbox.connection(user=None) == connection

    async def test_exec_without_a_concurrency_slot(self, sandbox: SandboxEnvironment) -> None:
        """``concurrency=False`` runs while every ``"subprocesses"`` slot is taken."""
        limiter = subprocess_limiter()
        holders = [object() for _ in range(limiter.limit)]
        for holder in holders:
            await limiter.acquire_on_behalf_of(holder)
        try:
            with anyio.fail_after(60):
                result = await sandbox.exec(["echo", "no slot"], concurrency=False)
        finally:
            for holder in holders:
                limiter.release_on_behalf_of(holder)
        assert (result.returncode, result.stdout) == (0, "no slot\n")
