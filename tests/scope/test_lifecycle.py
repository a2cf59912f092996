"""The sandbox lifecycle a task owns: init once, per-sample init/cleanup, limits, limits in time."""

from __future__ import annotations

import secrets
from typing import Any, ClassVar

import anyio
import pytest

import corral
from corral._scope import _lifecycle
from corral._state._events import SandboxEvent
from corral.sandboxes import _registry
from corral.sandboxes._environment import SandboxEnvironment
from corral.sandboxes._lookup import sandbox
from corral.sandboxes._memory import MemorySandboxEnvironment
from corral.sandboxes._registry import sandboxenv
from corral.util import concurrency_status

pytestmark = pytest.mark.anyio


class Recording(MemorySandboxEnvironment):
    """A memory sandbox that records the lifecycle calls it gets."""

    calls: ClassVar[list[tuple[Any, ...]]] = []
    hang_cleanup: ClassVar[bool] = False
    fail_init: ClassVar[bool] = False

    @classmethod
    async def task_init(cls, task_name: str, config: Any) -> None:
        cls.calls.append(("task_init", task_name))

    @classmethod
    async def sample_init(
        cls, task_name: str, config: Any, metadata: dict[str, Any]
    ) -> dict[str, SandboxEnvironment]:
        if cls.fail_init:
            raise RuntimeError("no capacity")
        cls.calls.append(("sample_init", metadata["__sample_id__"]))
        return await super().sample_init(task_name, config, metadata)

    @classmethod
    async def sample_cleanup(
        cls,
        task_name: str,
        config: Any,
        environments: dict[str, SandboxEnvironment],
        interrupted: bool,
    ) -> None:
        cls.calls.append(("sample_cleanup", interrupted))
        if cls.hang_cleanup:
            await anyio.sleep_forever()
        await super().sample_cleanup(task_name, config, environments, interrupted)

    @classmethod
    async def task_cleanup(cls, task_name: str, config: Any, cleanup: bool) -> None:
        cls.calls.append(("task_cleanup", cleanup))


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(_registry, "_table", dict(_registry._table))  # restored afterwards
    name = f"recording-{secrets.token_hex(4)}"
    Recording.calls = []
    Recording.hang_cleanup = False
    Recording.fail_init = False
    sandboxenv(name)(Recording)
    return name


async def test_task_init_once_and_cleanups(provider: str) -> None:
    async with corral.task("t", sandbox=provider) as task:
        for n in range(3):
            async with task.sample(n):
                result = await sandbox().exec(["echo", "hi"])
                assert result.stdout == "hi\n"
    assert Recording.calls == [
        ("task_init", "t"),
        ("sample_init", 0),
        ("sample_cleanup", False),
        ("sample_init", 1),
        ("sample_cleanup", False),
        ("sample_init", 2),
        ("sample_cleanup", False),
        ("task_cleanup", True),
    ]


async def test_calls_are_recorded_as_sandbox_events(provider: str) -> None:
    async with corral.task("t", sandbox=provider) as task, task.sample(1) as sample:
        await sandbox().write_file("notes.txt", "hello")
        assert await sandbox().read_file("notes.txt") == "hello"
    actions = [e.action for e in sample.transcript.events if isinstance(e, SandboxEvent)]
    assert actions == ["write_file", "read_file"]


async def test_a_failing_sample_is_cleaned_up_as_interrupted(provider: str) -> None:
    with pytest.raises(ExceptionGroup) as info:
        async with corral.task("t", sandbox=provider) as task, task.sample(1):
            raise KeyError("boom")
    assert info.group_contains(KeyError)
    assert ("sample_cleanup", True) in Recording.calls
    assert Recording.calls[-1] == ("task_cleanup", True)


async def test_cancelling_a_task_with_50_live_samples(provider: str) -> None:
    started = 0
    all_started = anyio.Event()

    async def run(task: corral.Task, n: int) -> None:
        nonlocal started
        async with task.sample(n):
            started += 1
            if started == 50:
                all_started.set()
            await sandbox().exec(["sleep", "3600"])

    async with corral.task("t", sandbox=provider) as task:
        for n in range(50):
            task.start_soon(run, task, n)
        await all_started.wait()
        task.cancel()
    cleanups = [c for c in Recording.calls if c[0] == "sample_cleanup"]
    assert cleanups == [("sample_cleanup", True)] * 50
    assert Recording.calls[-1] == ("task_cleanup", True)


async def test_sample_init_failure_names_the_provider(provider: str) -> None:
    Recording.fail_init = True
    with pytest.raises(ExceptionGroup) as info:
        async with corral.task("t", sandbox=provider) as task, task.sample(1):
            pytest.fail("the sample ran without its sandbox")
    (error,) = info.value.exceptions
    assert isinstance(error, RuntimeError)
    assert any(provider in note for note in error.__notes__)
    assert ("sample_cleanup", True) not in Recording.calls  # nothing was created
    assert Recording.calls[-1] == ("task_cleanup", True)


async def test_a_hanging_cleanup_is_bounded_and_warned(
    provider: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_lifecycle, "CLEANUP_TIMEOUT", 0.2)
    Recording.hang_cleanup = True
    with (
        anyio.fail_after(30),
        pytest.warns(RuntimeWarning, match="sample_cleanup of sandbox .* did not finish"),
    ):
        async with corral.task("t", sandbox=provider) as task, task.sample(1):
            pass
    assert Recording.calls[-1] == ("task_cleanup", True)


async def test_time_limit_cleans_up_as_interrupted(provider: str) -> None:
    async with corral.task("t", sandbox=provider) as task:
        with pytest.raises(TimeoutError, match="time limit"):
            async with task.sample(1, time_limit=0.1):
                await sandbox().exec(["sleep", "3600"])
    assert ("sample_cleanup", True) in Recording.calls


async def test_max_sandboxes_bounds_the_samples_holding_one(provider: str) -> None:
    holding = peak = 0

    async def run(task: corral.Task, n: int) -> None:
        nonlocal holding, peak
        async with task.sample(n):
            holding += 1
            peak = max(peak, holding)
            await anyio.wait_all_tasks_blocked()
            holding -= 1

    async with corral.task("t", sandbox=provider, max_sandboxes=3) as task:
        for n in range(10):
            task.start_soon(run, task, n)
    assert peak == 3


async def test_sandbox_cleanup_false_skips_the_hooks(provider: str) -> None:
    async with corral.task("t", sandbox=provider, sandbox_cleanup=False) as task, task.sample(1):
        pass
    assert [c[0] for c in Recording.calls] == ["task_init", "sample_init", "task_cleanup"]
    assert Recording.calls[-1] == ("task_cleanup", False)


async def test_no_sandbox_outside_a_sample() -> None:
    with pytest.raises(ProcessLookupError):
        sandbox()


def test_bad_sandbox_arguments() -> None:
    with pytest.raises(TypeError, match="sandbox must be"):
        corral.task("t", sandbox=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_sandboxes must be >= 1"):
        corral.task("t", sandbox="local", max_sandboxes=0)
    with pytest.raises(TypeError, match="sandbox_cleanup must be a bool"):
        corral.task("t", sandbox_cleanup="yes")  # type: ignore[arg-type]


async def test_max_sandboxes_is_per_task(provider: str) -> None:
    """Regression: two tasks' max_sandboxes shared one limiter (the first won)."""
    peaks: dict[str, int] = {}

    async def run_task(name: str, limit: int) -> None:
        holding = 0

        async def run(task: corral.Task, n: int) -> None:
            nonlocal holding
            async with task.sample(n):
                holding += 1
                peaks[name] = max(peaks.get(name, 0), holding)
                await anyio.wait_all_tasks_blocked()
                holding -= 1

        async with corral.task(name, sandbox=provider, max_sandboxes=limit) as task:
            for n in range(6):
                task.start_soon(run, task, n)

    await run_task("one", 1)
    await run_task("three", 3)
    assert peaks == {"one": 1, "three": 3}


async def test_task_sandbox_limits_live_only_as_long_as_their_task(provider: str) -> None:
    """Regression: per-task max_sandboxes limiters stayed in the loop's registry, keyed by id().

    After 300 sequential tasks, 217 were listed by concurrency_status(), and a
    new task sometimes got an older task's limit when CPython reused an id.
    """
    for n in range(300):
        limit = 1 + n % 3
        async with (
            corral.task("t", sandbox=provider, max_sandboxes=limit) as task,
            task.sample(n),
        ):
            assert concurrency_status()[f"sandboxes/{provider}"] == (1, limit)
        assert [name for name in concurrency_status() if name.startswith("sandboxes/")] == []


async def test_two_tasks_of_one_name_each_show_their_own_limit(provider: str) -> None:
    async with (
        corral.task("same", sandbox=provider, max_sandboxes=2) as first,
        corral.task("same", sandbox=provider, max_sandboxes=5) as second,
        first.sample(1),
        second.sample(2),
    ):
        limits = {k: v for k, v in concurrency_status().items() if k.startswith("sandboxes/")}
        assert sorted(limits.values()) == [(1, 2), (1, 5)]
    assert not [k for k in concurrency_status() if k.startswith("sandboxes/")]
