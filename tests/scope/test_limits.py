"""Scoped limits: time_limit(), working_limit(), apply_limits() and the sample's own limits.

Every test runs on a virtual clock (both backends): the limits are deadlines,
so an hour of sleeping costs nothing and the times measured are exact.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable
from typing import Any

import anyio
import pytest

import corral
from corral.sandboxes import _registry
from corral.sandboxes._lookup import sandbox
from corral.sandboxes._memory import MemorySandboxEnvironment
from corral.sandboxes._registry import sandboxenv
from corral.util import (
    Limit,
    LimitExceededError,
    LimitScope,
    SampleLimits,
    apply_limits,
    concurrency,
    sample_limits,
    suspend_working_limit,
    time_limit,
    working_limit,
)
from tests.support.clock import virtual_backend

pytestmark = pytest.mark.anyio

LIMITS: list[Callable[[Any], Limit]] = [time_limit, working_limit]


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    """Both backends, each with a virtual clock."""
    return virtual_backend(request.param)


def _key() -> str:
    return f"slot-{secrets.token_hex(4)}"


async def _hold(key: str, seconds: float, *, task_status: anyio.abc.TaskStatus[None]) -> None:
    """Hold the one slot of *key* for *seconds*, reporting once it is held."""
    async with concurrency(key, 1):
        task_status.started()
        await anyio.sleep(seconds)


# time_limit ---------------------------------------------------------------------------------


async def test_time_limit_cancels_the_block_and_raises_with_its_fields() -> None:
    reached = False
    start = anyio.current_time()
    with pytest.raises(LimitExceededError) as info, time_limit(5) as limit:  # noqa: PT012
        await anyio.sleep(100)
        reached = True
    assert not reached
    assert anyio.current_time() - start == pytest.approx(5)
    error = info.value
    assert (error.type, error.limit, error.source) == ("time", 5, limit)
    assert error.value == pytest.approx(5)
    assert error.value_str == "5.00"
    assert error.limit_str == "5.00"
    assert error.message == str(error) == "time limit of 5 seconds exceeded (5.00 s)"
    assert not isinstance(error, TimeoutError)  # only a sample's own limits are TimeoutErrors
    assert limit.usage == pytest.approx(5)
    assert limit.remaining == pytest.approx(0)


async def test_time_limit_not_reached_reports_usage_and_remaining() -> None:
    limit = time_limit(10)
    assert (limit.limit, limit.usage, limit.remaining) == (10, 0.0, 10)
    with limit:
        await anyio.sleep(3)
        assert limit.usage == pytest.approx(3)
        assert limit.remaining == pytest.approx(7)
    await anyio.sleep(50)  # the block is over: usage stays what it was
    assert limit.usage == pytest.approx(3)
    assert "time_limit: limit 10 s, 3.000 s used" in repr(limit)


@pytest.mark.parametrize("make", LIMITS)
async def test_a_limit_of_none_is_no_limit(make: Callable[[Any], Limit]) -> None:
    with make(None) as limit:
        await anyio.sleep(1e4)
        assert anyio.current_effective_deadline() == math.inf
    assert limit.limit is None
    assert limit.remaining is None
    assert limit.usage == pytest.approx(1e4)


@pytest.mark.parametrize("make", LIMITS)
async def test_a_limit_of_zero_fires_at_the_first_checkpoint(make: Callable[[Any], Limit]) -> None:
    with pytest.raises(LimitExceededError) as info, make(0):  # noqa: PT012
        await anyio.lowlevel.checkpoint()
        pytest.fail("not cancelled")
    assert info.value.limit == 0


@pytest.mark.parametrize("make", LIMITS)
@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        (-1, ValueError, r"limit must be >= 0 seconds, got -1"),
        (math.nan, ValueError, r"limit must be >= 0 seconds, got nan"),
        ("5", TypeError, r"limit must be a number of seconds, got str"),
        (True, TypeError, r"limit must be a number of seconds, got bool"),
    ],
)
def test_bad_limits_are_refused_naming_the_parameter(
    make: Callable[[Any], Limit], value: object, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        make(value)


@pytest.mark.parametrize("make", LIMITS)
async def test_a_limit_is_entered_once(make: Callable[[Any], Limit]) -> None:
    limit = make(10)
    with limit:
        pass
    with pytest.raises(RuntimeError, match=r"already been entered; call \w+_limit\(\) again"):
        limit.__enter__()


# working_limit ------------------------------------------------------------------------------


async def test_working_limit_fires_while_the_code_runs() -> None:
    """inspect#5228: a scoped working limit must fire, in the middle of the work (here a sleep)."""
    start = anyio.current_time()
    with pytest.raises(LimitExceededError) as info, working_limit(3) as limit:  # noqa: PT012
        await anyio.sleep(100)
        pytest.fail("not cancelled")
    assert anyio.current_time() - start == pytest.approx(3)
    error = info.value
    assert (error.type, error.limit, error.source) == ("working", 3, limit)
    assert error.value == pytest.approx(3)
    assert "working limit of 3 seconds exceeded" in error.message


async def test_waiting_for_a_concurrency_slot_is_not_working_time() -> None:
    key = _key()
    async with anyio.create_task_group() as group:
        await group.start(_hold, key, 100)  # another task holds the one slot for 100 s
        start = anyio.current_time()
        with working_limit(10) as limit:
            async with concurrency(key, 1):
                assert anyio.current_time() - start == pytest.approx(100)
                assert limit.usage == pytest.approx(0)
                await anyio.sleep(5)
    assert anyio.current_time() - start == pytest.approx(105)
    assert limit.usage == pytest.approx(5)


@pytest.mark.parametrize("through", ["subprocess", "local sandbox"])
async def test_waiting_for_a_subprocess_slot_is_not_working_time(through: str) -> None:
    from corral._core._settings import subprocess_limiter
    from corral.util import subprocess

    async def hold(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        slot = object()
        await subprocess_limiter().acquire_on_behalf_of(slot)
        task_status.started()
        await anyio.sleep(100)  # virtual seconds
        subprocess_limiter().release_on_behalf_of(slot)

    async with (
        corral.task("t", max_subprocesses=1, sandbox="local") as task,
        task.sample(1),
        anyio.create_task_group() as group,
    ):
        await group.start(hold)
        start = anyio.current_time()
        with working_limit(None) as limit:  # no deadline: the clock must not jump mid-command
            if through == "subprocess":
                assert (await subprocess(["true"])).success
            else:
                assert (await sandbox().exec(["true"])).success
        assert anyio.current_time() - start >= 100
        assert limit.usage < 5  # the command's own (real) time: milliseconds


async def test_working_limit_fires_after_a_wait_at_the_working_time_left() -> None:
    key = _key()
    async with anyio.create_task_group() as group:
        await group.start(_hold, key, 100)
        start = anyio.current_time()
        with pytest.raises(LimitExceededError) as info, working_limit(10):  # noqa: PT012
            await anyio.sleep(4)  # 4 s of work
            async with concurrency(key, 1):  # 96 s of waiting
                await anyio.sleep(100)  # 6 s of work left
    assert anyio.current_time() - start == pytest.approx(106)
    assert info.value.value == pytest.approx(10)


async def test_concurrent_waits_count_once_and_freeze_the_whole_block() -> None:
    key = _key()
    async with anyio.create_task_group() as outer:
        await outer.start(_hold, key, 50)
        with working_limit(None) as limit:
            async with anyio.create_task_group() as group:
                for _ in range(3):
                    group.start_soon(_take, key)
    assert limit.usage == pytest.approx(0)  # 50 s waited by three tasks at once, none worked


async def _take(key: str) -> None:
    async with concurrency(key, 1):
        pass


async def test_a_wait_outside_the_block_does_not_count() -> None:
    key = _key()
    async with anyio.create_task_group() as group:
        await group.start(_hold, key, 100)
        group.start_soon(_take, key)  # waits 100 s, but outside the limit's block
        with working_limit(None) as limit:
            await anyio.sleep(100)
    assert limit.usage == pytest.approx(100)


async def test_suspend_working_limit_counts_the_block_as_waiting() -> None:
    with working_limit(3) as outer, working_limit(2) as inner:
        await anyio.sleep(1)
        with suspend_working_limit():
            await anyio.sleep(100)
        await anyio.sleep(0.5)
    assert outer.usage == pytest.approx(1.5)
    assert inner.usage == pytest.approx(1.5)


def test_suspend_working_limit_outside_any_limit_does_nothing() -> None:
    with suspend_working_limit():
        pass


# nesting and apply_limits -------------------------------------------------------------------


async def test_nested_limits_the_tightest_fires_and_reports_itself() -> None:
    start = anyio.current_time()
    with pytest.raises(LimitExceededError) as outer_info, time_limit(10) as outer:  # noqa: PT012
        with pytest.raises(LimitExceededError) as inner_info, working_limit(2) as inner:
            await anyio.sleep(100)
        assert inner_info.value.source is inner
        assert anyio.current_time() - start == pytest.approx(2)
        await anyio.sleep(100)  # the outer limit still applies
    assert outer_info.value.source is outer
    assert anyio.current_time() - start == pytest.approx(10)


async def test_an_outer_limit_tighter_than_the_inner_one_reports_itself() -> None:
    with pytest.raises(LimitExceededError) as info, working_limit(2) as outer, time_limit(10):
        await anyio.sleep(100)
    assert info.value.source is outer
    assert info.value.type == "working"


async def test_an_outer_limit_that_fired_too_replaces_the_inner_error() -> None:
    """The inner limit fires first, its cleanup outlasts the outer one: the outer one reports."""
    with pytest.raises(LimitExceededError) as info, time_limit(3) as outer, time_limit(2):  # noqa: PT012
        try:
            await anyio.sleep(100)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.sleep(5)
    assert info.value.source is outer


def _error(scope: LimitScope) -> LimitExceededError | None:
    return scope.limit_error  # read afresh: mypy would keep an earlier narrowing


async def test_apply_limits_catch_errors_sets_limit_error_and_does_not_raise() -> None:
    limit = time_limit(1)
    with apply_limits([working_limit(5), limit], catch_errors=True) as scope:
        assert isinstance(scope, LimitScope)
        assert _error(scope) is None
        await anyio.sleep(100)
    error = _error(scope)
    assert error is not None
    assert error.source is limit


async def test_apply_limits_raises_by_default_and_sets_limit_error() -> None:
    limit = working_limit(1)
    with pytest.raises(LimitExceededError) as info, apply_limits([limit]) as scope:
        await anyio.sleep(100)
    assert info.value.source is limit
    assert scope.limit_error is info.value


async def test_apply_limits_lets_an_enclosing_limit_through() -> None:
    with pytest.raises(LimitExceededError) as info, time_limit(1) as outer:  # noqa: PT012
        with apply_limits([time_limit(10)], catch_errors=True) as scope:
            await anyio.sleep(100)
        pytest.fail("the enclosing limit was swallowed")
    assert info.value.source is outer
    assert scope.limit_error is None


async def test_apply_limits_lets_a_limit_raised_inside_through() -> None:
    error = LimitExceededError("custom", value=2, limit=1)
    with pytest.raises(LimitExceededError) as info, apply_limits([], catch_errors=True) as scope:
        raise error
    assert info.value is error
    assert scope.limit_error is None
    assert error.message == "custom limit of 1 exceeded"
    assert (error.value_str, error.limit_str) == ("2", "1")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"limits": time_limit(1)}, TypeError, r"limits must be a list of Limit, got _TimeLimit"),
        ({"limits": [1]}, TypeError, r"limits\[0\] must be a Limit, got int"),
        ({"limits": [], "catch_errors": "yes"}, TypeError, r"catch_errors must be a bool"),
    ],
)
def test_apply_limits_bad_arguments(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match), apply_limits(**kwargs):
        pass


def test_limit_scope_has_no_public_constructor() -> None:
    with pytest.raises(TypeError, match="no public constructor"):
        LimitScope()


# the sample's own limits --------------------------------------------------------------------


def test_sample_limits_outside_a_sample_is_an_error() -> None:
    with pytest.raises(RuntimeError, match=r"sample_limits\(\) must be called inside a sample"):
        sample_limits()


async def test_sample_limits_reports_the_samples_limits() -> None:
    async with corral.task("t") as task:
        async with task.sample(1, time_limit=60, working_limit=30):
            limits = sample_limits()
            assert isinstance(limits, SampleLimits)
            assert (limits.time.limit, limits.working.limit) == (60, 30)
            await anyio.sleep(10)
            assert limits.time.usage == pytest.approx(10)
            assert limits.working.remaining == pytest.approx(20)
        async with task.sample(2):
            assert sample_limits().time.limit is None
            assert sample_limits().working.limit is None
            assert sample_limits() is not limits


@pytest.mark.parametrize("kind", ["time", "working"])
async def test_a_samples_limit_raises_a_timeout_error_that_is_a_limit_error(kind: str) -> None:
    async with corral.task("t") as task:
        with pytest.raises(TimeoutError) as info:  # noqa: PT012
            async with task.sample("s", **{f"{kind}_limit": 2.0}):  # type: ignore[arg-type]
                limit = getattr(sample_limits(), kind)
                await anyio.sleep(100)
        error = info.value
        assert str(error) == f"sample 's' exceeded its {kind} limit of 2 seconds"
        assert isinstance(error, LimitExceededError)
        assert (error.type, error.limit, error.source) == (kind, 2, limit)
        assert error.value == pytest.approx(2)


async def test_a_scoped_limit_inside_a_sample_is_not_the_samples() -> None:
    async with corral.task("t") as task, task.sample(1, time_limit=10):
        with pytest.raises(LimitExceededError) as info, time_limit(1):
            await anyio.sleep(100)
        assert not isinstance(info.value, TimeoutError)
        assert sample_limits().time.usage == pytest.approx(1)


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        (-1, ValueError, r"working_limit must be >= 0 seconds"),
        (math.nan, ValueError, r"working_limit must be >= 0 seconds"),
        ("1", TypeError, r"working_limit must be a number of seconds"),
    ],
)
async def test_a_bad_sample_working_limit_is_refused(
    value: object, error: type[Exception], match: str
) -> None:
    async with corral.task("t") as task:
        with pytest.raises(error, match=match):
            task.sample(1, working_limit=value)  # type: ignore[arg-type]


async def test_the_samples_working_limit_excludes_concurrency_waits() -> None:
    key = _key()
    async with corral.task("t") as task:
        await task.start(_hold, key, 100)
        async with task.sample(1, working_limit=10):
            async with concurrency(key, 1):
                await anyio.sleep(5)
            assert sample_limits().working.usage == pytest.approx(5)
            assert sample_limits().time.usage == pytest.approx(105)


class _Slow(MemorySandboxEnvironment):
    """A memory sandbox; the tests give it one slot."""


@pytest.fixture
def slow_provider(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(_registry, "_table", dict(_registry._table))  # restored afterwards
    name = f"memory-{secrets.token_hex(4)}"
    sandboxenv(name)(_Slow)
    return name


async def test_waiting_for_a_sandbox_slot_is_not_working_time(slow_provider: str) -> None:
    usage: list[float] = []

    async def first(task: corral.Task, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        async with task.sample("first"):
            task_status.started()
            await anyio.sleep(100)  # holds the one sandbox slot

    async with corral.task("t", sandbox=slow_provider, max_sandboxes=1) as task:
        await task.start(first, task)
        start = anyio.current_time()
        async with task.sample("second", working_limit=10):
            assert (await sandbox().exec(["true"])).success
            await anyio.sleep(5)
            usage.append(sample_limits().working.usage)
        assert anyio.current_time() - start == pytest.approx(105)
    assert usage == [pytest.approx(5)]
