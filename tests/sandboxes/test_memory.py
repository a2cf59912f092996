"""The in-memory fake sandbox used by the lifecycle tests."""

from __future__ import annotations

import pytest

from corral.sandboxes._memory import MemorySandboxEnvironment
from corral.sandboxes._proxy import SandboxEnvironmentProxy
from corral.util import (
    OutputLimitExceededError,
    SandboxUnavailableError,
    override_sandbox_output_limit,
)

pytestmark = pytest.mark.anyio


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
