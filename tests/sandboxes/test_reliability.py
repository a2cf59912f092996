"""Reliability of the sandbox lifecycle with the real local provider.

Each test registers a subclass of the local provider under a fresh name (the
registry table is restored afterwards) that records the lifecycle calls it
gets, then checks what the runtime promises when things go wrong: a
cancelled task cleans every live sample up as interrupted and leaves no
process and no working directory behind; a failing ``sample_init`` names the
provider and the task still runs ``task_cleanup``; a hanging
``sample_cleanup`` is given up on with a warning and the task still exits.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from typing import Any, ClassVar

import anyio
import pytest

import corral
from corral._scope import _lifecycle
from corral.sandboxes import _registry
from corral.sandboxes._environment import SandboxEnvironment
from corral.sandboxes._local import LocalSandboxEnvironment
from corral.sandboxes._lookup import sandbox
from corral.sandboxes._registry import sandboxenv
from tests.conftest import Fifo, processes_matching, unique_sleep

pytestmark = pytest.mark.anyio

SAMPLES = 50


class RecordingLocal(LocalSandboxEnvironment):
    """The local provider, recording its lifecycle calls and the directories it made.

    ``fail_init`` makes ``sample_init`` run a command that leaves a
    background process, then fail; the provider cleans up what it created
    itself, since the runtime only calls ``sample_cleanup`` after a
    successful ``sample_init``. ``hang_cleanup`` makes ``sample_cleanup``
    release everything and then never return.
    """

    calls: ClassVar[list[tuple[Any, ...]]] = []
    directories: ClassVar[list[str]] = []
    fail_init: ClassVar[str | None] = None
    hang_cleanup: ClassVar[bool] = False

    @classmethod
    async def task_init(cls, task_name: str, config: Any) -> None:
        cls.calls.append(("task_init", task_name))

    @classmethod
    async def sample_init(
        cls, task_name: str, config: Any, metadata: dict[str, Any]
    ) -> dict[str, SandboxEnvironment]:
        environments = await super().sample_init(task_name, config, metadata)
        env = environments["default"]
        assert isinstance(env, LocalSandboxEnvironment)
        cls.directories.append(env.directory)
        if cls.fail_init is None:
            return environments
        try:
            background = f"sleep {cls.fail_init} >/dev/null 2>&1 </dev/null &"
            await env.exec(["sh", "-c", background])
            raise RuntimeError("the sandbox could not be set up")
        except BaseException:
            # Not the runtime's job: sample_init failed, so it releases its own.
            await LocalSandboxEnvironment.sample_cleanup(task_name, config, environments, True)
            raise

    @classmethod
    async def sample_cleanup(
        cls,
        task_name: str,
        config: Any,
        environments: dict[str, SandboxEnvironment],
        interrupted: bool,
    ) -> None:
        cls.calls.append(("sample_cleanup", interrupted))
        await super().sample_cleanup(task_name, config, environments, interrupted)
        if cls.hang_cleanup:
            await anyio.sleep_forever()

    @classmethod
    async def task_cleanup(cls, task_name: str, config: Any, cleanup: bool) -> None:
        cls.calls.append(("task_cleanup", cleanup))


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch) -> str:
    """Register :class:`RecordingLocal` under a fresh name, with fresh records."""
    monkeypatch.setattr(_registry, "_table", dict(_registry._table))  # restored afterwards
    name = f"recording-local-{secrets.token_hex(4)}"
    RecordingLocal.calls = []
    RecordingLocal.directories = []
    RecordingLocal.fail_init = None
    RecordingLocal.hang_cleanup = False
    sandboxenv(name)(RecordingLocal)
    return name


def sandbox_directories() -> set[str]:
    """The local sandbox working directories now in the temporary directory."""
    root = tempfile.gettempdir()
    return {
        os.path.join(root, entry)
        for entry in os.listdir(root)
        if entry.startswith("corral-sandbox-")
    }


async def test_cancelling_a_task_with_50_samples_mid_exec(provider: str, fifo: Fifo) -> None:
    """Every live sample is cleaned up as interrupted; no process or directory is left."""
    marker = unique_sleep()
    before = sandbox_directories()

    async def run(task: corral.Task, n: int) -> None:
        async with task.sample(n):
            # A duration unique to the sample, starting with the test's marker.
            command = f"{fifo.shell_ready()}; exec sleep {marker}{n:02d}"
            await sandbox().exec(["sh", "-c", command])
            pytest.fail("the exec was not cancelled")

    try:
        with anyio.fail_after(60):
            async with corral.task("t", sandbox=provider, max_subprocesses=60) as task:
                for n in range(SAMPLES):
                    task.start_soon(run, task, n)
                await fifo.wait(SAMPLES)
                task.cancel("the test is done")
    finally:
        left = processes_matching(marker)
        for pid in left:
            os.kill(pid, 9)
    assert left == [], f"processes left running: {left}"

    cleanups = [call for call in RecordingLocal.calls if call[0] == "sample_cleanup"]
    assert cleanups == [("sample_cleanup", True)] * SAMPLES
    assert RecordingLocal.calls[0] == ("task_init", "t")
    assert RecordingLocal.calls[-1] == ("task_cleanup", True)

    created = set(RecordingLocal.directories)
    assert len(created) == SAMPLES
    assert created.isdisjoint(before)  # each sample had a new directory...
    assert created.isdisjoint(sandbox_directories())  # ...and it is gone


async def test_a_failing_sample_init_names_the_provider(provider: str) -> None:
    """The error propagates with a note naming the provider; the task still cleans up."""
    marker = unique_sleep()
    RecordingLocal.fail_init = marker
    with anyio.fail_after(30), pytest.raises(ExceptionGroup) as info:
        async with corral.task("t", sandbox=provider) as task, task.sample(1):
            pytest.fail("the sample ran without its sandbox")
    (error,) = info.value.exceptions
    assert isinstance(error, RuntimeError)
    assert str(error) == "the sandbox could not be set up"
    assert any(provider in note and "RecordingLocal" in note for note in error.__notes__)

    # The lifecycle does not clean up after a failed sample_init...
    assert [call[0] for call in RecordingLocal.calls] == ["task_init", "task_cleanup"]
    # ...so the provider did: its directory and its background process are gone.
    (directory,) = RecordingLocal.directories
    assert not os.path.exists(directory)
    assert processes_matching(marker) == []


async def test_a_hanging_sample_cleanup_is_bounded_and_warned(
    provider: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cleanup is abandoned after CLEANUP_TIMEOUT with a RuntimeWarning; the task exits."""
    monkeypatch.setattr(_lifecycle, "CLEANUP_TIMEOUT", 0.2)
    RecordingLocal.hang_cleanup = True
    ran: list[bool] = []
    with (
        anyio.fail_after(30),
        pytest.warns(RuntimeWarning, match=r"sample_cleanup of sandbox .* did not finish"),
    ):
        async with corral.task("t", sandbox=provider) as task, task.sample(1):
            ran.append((await sandbox().exec(["true"])).success)
    assert ran == [True]
    assert RecordingLocal.calls == [
        ("task_init", "t"),
        ("sample_cleanup", False),
        ("task_cleanup", True),
    ]
    (directory,) = RecordingLocal.directories
    assert not os.path.exists(directory)
