"""The conformance suite every sandbox provider runs against itself (see ``testing``).

The suite is a pytest base class, :class:`SandboxConformance`, whose tests
take one fixture, ``sandbox_env``: a fresh :class:`SandboxEnvironment` for
each test. A provider subclasses it in a test module and overrides the
fixture, creating the environment the way the runtime does (``sample_init``)
and releasing it afterwards (``sample_cleanup``); the suite calls it through
the sandbox proxy, as samples do, since the proxy owns the rules every
provider obeys (argument checks, ``timeout=``, output limits)::

    # tests/test_conformance_mine.py
    from collections.abc import AsyncIterator

    import pytest

    from corral.sandboxes.testing import SandboxConformance
    from corral.util import SandboxEnvironment

    from mypackage import MySandbox

    pytestmark = pytest.mark.anyio


    class TestMySandbox(SandboxConformance):
        @pytest.fixture
        async def sandbox_env(self) -> AsyncIterator[SandboxEnvironment]:
            environments = await MySandbox.sample_init("conformance", None, {})
            try:
                yield next(iter(environments.values()))
            finally:
                await MySandbox.sample_cleanup("conformance", None, environments, False)

Every test is async and runs under each backend the module's
``anyio_backend`` fixture yields (anyio's default is asyncio only; define
``anyio_backend`` with ``params=["trio", "asyncio"]`` in a ``conftest.py`` to
run both). The tests need ``sh``, ``cat``, ``printf``, ``pwd``, ``wc``,
``sleep``, ``chmod`` and ``grep`` inside the sandbox, and a Linux ``/proc``
to look for leftover processes; a provider may override
:meth:`SandboxConformance.live_processes`, :attr:`~SandboxConformance.unreadable_path`
and :attr:`~SandboxConformance.unwritable_path` where its sandbox differs.

This module imports pytest: it is imported only by :mod:`corral.sandboxes.testing`,
which is meant for test suites.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any, ClassVar

import anyio
import pytest

from ._errors import OutputLimitExceededError, SandboxTimeoutError
from ._output_limits import override_sandbox_output_limit
from ._proxy import SandboxEnvironmentProxy

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from ._environment import SandboxEnvironment

__all__ = ["SandboxConformance"]

_MIB = 1024 * 1024


def _payload(size: int) -> bytes:
    """*size* bytes of every value, including NUL and invalid UTF-8, cheap to make."""
    block = secrets.token_bytes(64 * 1024) + bytes(range(256))
    return (block * (size // len(block) + 1))[:size]


@pytest.mark.anyio
class SandboxConformance:
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
    """

    unreadable_path: ClassVar[str] = "/sys/bus/platform/uevent"
    unwritable_path: ClassVar[str] = "/sys/devices/system/cpu/online"

    @pytest.fixture
    def sandbox_env(self) -> AsyncIterator[SandboxEnvironment]:
        """The environment under test; a provider's subclass must override this."""
        raise NotImplementedError(
            f"{type(self).__name__} must override the 'sandbox_env' fixture with one that "
            "yields a SandboxEnvironment (see corral.sandboxes.testing)"
        )

    @pytest.fixture
    def sandbox(self, sandbox_env: SandboxEnvironment) -> SandboxEnvironment:
        """The environment under test as samples see it: wrapped in the sandbox proxy.

        The proxy owns the contract's rules (argument checks, ``timeout=``,
        output limits), so the suite checks them through it.
        """
        return SandboxEnvironmentProxy(sandbox_env)

    async def live_processes(self, env: SandboxEnvironment, marker: str) -> list[str]:
        """Paths of ``/proc/PID/cmdline`` files in the sandbox that contain *marker*.

        The marker is passed to ``grep`` in a file, so the search does not
        find itself; zombies have an empty command line and are not found.
        """
        await env.write_file("conformance-marker", marker)
        result = await env.exec(
            ["sh", "-c", "grep -lsF -f conformance-marker /proc/[0-9]*/cmdline; true"]
        )
        return result.stdout.split()

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
        with pytest.raises(PermissionError) as info:
            await sandbox.read_file(self.unreadable_path)
        assert self.unreadable_path in str(info.value)

    async def test_write_permission_denied(self, sandbox: SandboxEnvironment) -> None:
        with pytest.raises(PermissionError) as info:
            await sandbox.write_file(self.unwritable_path, "0")
        assert self.unwritable_path in str(info.value)

    async def test_exec_not_executable(self, sandbox: SandboxEnvironment) -> None:
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
        marker = f"300.{secrets.randbelow(10**8):08d}"
        with anyio.fail_after(30):
            with pytest.raises(SandboxTimeoutError) as info:
                await sandbox.exec(
                    ["sh", "-c", f"sleep {marker} & sleep {marker}; wait"], timeout=0.5
                )
        assert isinstance(info.value, TimeoutError)
        assert await self.live_processes(sandbox, marker) == []

    async def test_exec_env(self, sandbox: SandboxEnvironment) -> None:
        result = await sandbox.exec(
            ["sh", "-c", 'printf "%s|%s" "$CONFORMANCE_A" "$CONFORMANCE_B"'],
            env={"CONFORMANCE_A": "one", "CONFORMANCE_B": "two words = ok"},
        )
        assert result.stdout == "one|two words = ok"

    async def test_stdin_text(self, sandbox: SandboxEnvironment) -> None:
        result = await sandbox.exec(["cat"], input="line one\nligne deux é\n")
        assert result.stdout == "line one\nligne deux é\n"

    async def test_stdin_empty(self, sandbox: SandboxEnvironment) -> None:
        for data in ("", b"", None):
            result = await sandbox.exec(["wc", "-c"], input=data)
            assert result.stdout.split() == ["0"]

    async def test_stdin_binary(self, sandbox: SandboxEnvironment) -> None:
        data = b"nul\x00byte \xff\xfe invalid \x80 utf-8\n"
        result = await sandbox.exec(["cat"], input=data)
        assert result.stdout == data.decode("utf-8", errors="replace")
        # Through a file, to check the exact bytes arrived.
        await sandbox.exec(["sh", "-c", "cat > stdin.bin"], input=data)
        assert await sandbox.read_file("stdin.bin", text=False) == data

    async def test_stdin_large(self, sandbox: SandboxEnvironment) -> None:
        data = _payload(50 * _MIB)
        result = await sandbox.exec(["wc", "-c"], input=data)
        assert result.stdout.split() == [str(len(data))]

    async def test_large_argv(self, sandbox: SandboxEnvironment) -> None:
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
