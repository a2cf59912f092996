"""The in-memory fake sandbox used by the lifecycle tests, and its run of the conformance suite."""

from __future__ import annotations

from typing import Any, ClassVar

import anyio
import anyio.lowlevel
import pytest

from corral.sandboxes._conformance import Capability
from corral.sandboxes._memory import MemorySandboxEnvironment
from corral.sandboxes._proxy import SandboxEnvironmentProxy
from corral.sandboxes.testing import SandboxConformance
from corral.util import (
    OutputLimitExceededError,
    SandboxEnvironment,
    SandboxUnavailableError,
    override_sandbox_output_limit,
)
from tests.support.clock import virtual_backend

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    """Both backends, on a virtual clock: nothing here runs outside the event loop."""
    return virtual_backend(request.param)


class TestMemoryConformance(SandboxConformance):
    """The suite, less what a dict of files and a handful of builtins cannot have."""

    lacks: ClassVar[frozenset[Capability]] = frozenset(
        {"posix_shell", "special_files", "file_permissions", "native_streaming"}
    )

    provider = MemorySandboxEnvironment  # the one-line form: the suite's own sandbox_env

    async def live_processes(self, env: SandboxEnvironment, marker: str) -> list[str]:
        """The running commands of every memory environment (one host) that hold *marker*."""
        await anyio.lowlevel.checkpoint()
        return [" ".join(cmd) for cmd in MemorySandboxEnvironment.running if marker in cmd]

    def sleeper(self, marker: str) -> list[str]:
        """``sleep``: the memory sandbox has no background jobs."""
        return ["sleep", marker]


async def test_builtins() -> None:
    env = MemorySandboxEnvironment({"/d/f": "x", "/usr/bin/tool": b""})
    assert (await env.exec(["true"])).success
    assert (await env.exec(["false"])).returncode == 1
    assert (await env.exec(["exit", "3"])).returncode == 3
    assert (await env.exec(["test", "-d", "/d"])).success
    assert (await env.exec(["test", "-e", "/d"])).success
    assert (await env.exec(["test", "-f", "/d"])).returncode == 1
    assert (await env.exec(["test", "-r", "f"], cwd="/d")).success
    assert (await env.exec(["test", "-x", "/d/f"])).returncode == 2
    assert (await env.exec(["cat"], input=b"\xff")).stdout == "\ufffd"
    assert (await env.exec(["which", "tool", "echo"])).stdout == "/usr/bin/tool\n/bin/echo\n"
    assert (await env.exec(["which"])).returncode == 1
    assert (await env.exec([])).returncode == 127
    assert (await env.exec(["sleep", "0"])).success
    assert env.commands[0] == ["true"]


async def test_files() -> None:
    env = MemorySandboxEnvironment()
    await env.write_file("a/b.txt", "é")
    assert env.files == {"/work/a/b.txt": "é".encode()}
    assert await env.read_file("/work/a/b.txt") == "é"
    with pytest.raises(IsADirectoryError):
        await env.read_file("a")
    with pytest.raises(NotADirectoryError):
        await env.write_file("a/b.txt/c", "")
    await env.write_file("bin", b"\xff")
    with pytest.raises(UnicodeDecodeError):
        await env.read_file("bin")
    proxied = SandboxEnvironmentProxy(env)  # the read limit is the proxy's
    with override_sandbox_output_limit(1, "read_file"), pytest.raises(OutputLimitExceededError):
        await proxied.read_file("a/b.txt")


async def test_lifecycle() -> None:
    [single] = (await MemorySandboxEnvironment.sample_init("t", None, {})).values()
    named = await MemorySandboxEnvironment.sample_init("t", ["main", "db"], {})
    assert list(named) == ["main", "db"]
    with_files = await MemorySandboxEnvironment.sample_init("t", {"a": {"/f": "x"}}, {})
    assert await with_files["a"].read_file("/f") == "x"
    with pytest.raises(TypeError, match="config"):
        await MemorySandboxEnvironment.sample_init("t", 3, {})
    await MemorySandboxEnvironment.sample_cleanup("t", None, {"default": single}, False)
    assert "closed" in repr(single)
    with pytest.raises(SandboxUnavailableError):
        await single.exec(["true"])
    with pytest.raises(SandboxUnavailableError):
        await single.connection()


async def test_streaming_builtins() -> None:
    env = MemorySandboxEnvironment()
    done = await env.exec(["sh", "-c", "echo 'a b' ;pwd;; printf '%s|' x y; exit 4"], cwd="d")
    assert (done.returncode, done.stdout) == (4, "a b\n/work/d\nx|y|")
    assert (await env.exec(["sh", "-c", "echo 'open"])).returncode == 2
    assert (await env.exec(["sh", "script.sh"])).returncode == 2
    assert (await env.exec(["printf"])).returncode == 1
    shown = await env.exec(["printf", r"%s\t%% %d \101\0\q\\", "x", "unused"])
    assert shown.stdout == "x\t% %d A\0\\q\\" + "unused\t% %d A\0\\q\\"
    assert (await env.exec(["printenv", "A", "B"], env={"A": "1"})).stdout == "1\n"
    assert (await env.exec(["printenv", "A", "B"], env={"A": "1"})).returncode == 1
    with override_sandbox_output_limit(100, "exec"):  # called directly: it stops itself
        endless = await env.exec(["yes"])
    assert (endless.returncode, len(endless.stdout)) == (141, 100)
    assert MemorySandboxEnvironment.running == []
