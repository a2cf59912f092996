"""The same fixtures under pytest-asyncio (asyncio only; in auto mode the marks can go)."""

import pytest

from corral import Sample
from corral.util import SandboxEnvironment, sandbox, store

pytestmark = pytest.mark.asyncio


@pytest.mark.corral_sample(sandbox="local", metadata={"level": 1})
async def test_sample(corral_no_leftovers: str, corral_sample: Sample) -> None:
    store().set("seen", True)
    assert corral_sample.store.get("seen") is True
    assert corral_sample.metadata == {"level": 1}
    result = await sandbox().exec(["echo", "hello"])
    assert result.stdout == "hello\n"


async def test_local(corral_no_leftovers: str, corral_local_sandbox: SandboxEnvironment) -> None:
    await corral_local_sandbox.write_file("notes.txt", "hi")
    assert (await corral_local_sandbox.exec(["cat", "notes.txt"])).stdout == "hi"
