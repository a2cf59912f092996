"""A harness's tests with corral's pytest fixtures, run by anyio's plugin (trio and asyncio)."""

import pytest

import corral
from corral import Sample, Task
from corral.util import SandboxEnvironment, sandbox, store, subprocess

pytestmark = pytest.mark.anyio


async def grade(answer: str) -> bool:
    """The code under test: it runs inside a sample, with a sandbox."""
    result = await sandbox().exec(["sh", "-c", f"test {answer} = 42"])
    store().set("graded", answer)
    return result.success


@pytest.mark.corral_task(max_subprocesses=2)
@pytest.mark.corral_sample(id="q1", sandbox="local")
async def test_grade(corral_no_leftovers: str, corral_task: Task, corral_sample: Sample) -> None:
    assert corral.current_task() is corral_task
    assert await grade("42")
    assert corral_sample.store.get("graded") == "42"
    result = await subprocess(["echo", "done"])
    assert result.stdout == "done\n"


async def test_files(corral_memory_sandbox: SandboxEnvironment) -> None:
    await corral_memory_sandbox.write_file("answer.txt", "42\n")
    assert await corral_memory_sandbox.read_file("answer.txt") == "42\n"


async def test_local(corral_no_leftovers: str, corral_local_sandbox: SandboxEnvironment) -> None:
    result = await corral_local_sandbox.exec(["pwd"])
    assert "corral-sandbox-" in result.stdout
