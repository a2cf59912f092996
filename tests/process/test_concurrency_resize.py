"""Resizing a named limit while it is in use, through the object concurrency() yields."""

from __future__ import annotations

import logging

import anyio
import pytest

from corral.util import concurrency, concurrency_status
from tests.support.clock import virtual_backend

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> object:
    """Virtual time on both backends: a waiter that is never woken fails its fail_after at once."""
    return virtual_backend(request.param)


async def test_raising_the_limit_wakes_a_waiter_at_once() -> None:
    entered = anyio.Event()
    release = anyio.Event()

    async def waiter() -> None:
        async with concurrency("api", 1):
            entered.set()
            await release.wait()

    async with anyio.create_task_group() as tg, concurrency("api", 1) as limit:
        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        assert not entered.is_set()
        limit.concurrency = 2
        with anyio.fail_after(1):
            await entered.wait()  # while the first slot is still held
        assert (limit.concurrency, limit.in_use, limit.value) == (2, 2, 0)
        release.set()


async def test_raising_the_limit_admits_waiters_in_the_order_they_came() -> None:
    order: list[int] = []
    release = anyio.Event()

    async def waiter(n: int) -> None:
        async with concurrency("api", 1):
            order.append(n)
            await release.wait()

    async with anyio.create_task_group() as tg:
        async with concurrency("api", 1) as limit:
            for n in range(4):
                tg.start_soon(waiter, n)
                await anyio.wait_all_tasks_blocked()
            limit.concurrency = 3  # two free slots: the first two waiters
            await anyio.wait_all_tasks_blocked()
            # Both were admitted at once; trio may run the two woken tasks in either order.
            assert sorted(order) == [0, 1]
            assert limit.in_use == 3
        await anyio.wait_all_tasks_blocked()
        assert order[2:] == [2]  # the outer slot went to the next in line
        release.set()
    assert order[2:] == [2, 3]


async def test_lowering_the_limit_lets_the_holders_drain() -> None:
    releases = [anyio.Event() for _ in range(2)]
    newcomer_in = anyio.Event()

    async def holder(release: anyio.Event) -> None:
        async with concurrency("pool", 3):
            await release.wait()

    async def newcomer() -> None:
        async with concurrency("pool", 3):
            newcomer_in.set()

    async with anyio.create_task_group() as tg:
        async with concurrency("pool", 3) as limit:
            for release in releases:
                tg.start_soon(holder, release)
            await anyio.wait_all_tasks_blocked()
            assert limit.in_use == 3

            limit.concurrency = 1  # no holder is pre-empted
            assert (limit.concurrency, limit.in_use, limit.value) == (1, 3, 0)
            assert concurrency_status()["pool"] == (3, 1)
            tg.start_soon(newcomer)

            for left, release in enumerate(releases, start=1):
                release.set()
                await anyio.wait_all_tasks_blocked()
                assert limit.in_use == 3 - left
                assert not newcomer_in.is_set()  # still at or over the lowered limit
        with anyio.fail_after(1):
            await newcomer_in.wait()
    assert (limit.in_use, limit.value) == (0, 1)


async def test_status_reflects_the_live_limit() -> None:
    async with concurrency("shown", 2) as limit:
        assert concurrency_status() == {"shown": (1, 2)}
        limit.concurrency = 7
        assert concurrency_status() == {"shown": (1, 7)}
        limit.concurrency = 1
        assert concurrency_status() == {"shown": (1, 1)}
    # Resized after the block, through the object kept from it.
    limit.concurrency = 5
    assert concurrency_status() == {"shown": (0, 5)}


async def test_every_holder_of_the_key_sees_the_resize() -> None:
    async with concurrency("shared", 2, key="k") as first:
        first.concurrency = 4
        async with concurrency("shared", 2, key="k") as second:
            assert second.concurrency == 4
            assert concurrency_status()["shared"] == (2, 4)


async def test_asking_again_for_the_first_limit_after_a_resize_is_quiet(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="corral.concurrency")
    async with concurrency("k", 2) as limit:
        limit.concurrency = 6
    async with concurrency("k", 2) as again:
        assert again.concurrency == 6  # the resize stays; no warning
    assert not [r for r in caplog.records if r.name == "corral.concurrency"]
    async with concurrency("k", 4):
        pass
    (warning,) = [r for r in caplog.records if r.name == "corral.concurrency"]
    message = warning.getMessage()
    assert "already exists with 6 slot(s) (created with 2)" in message
    assert "request for 4 slot(s) is ignored" in message


@pytest.mark.parametrize(
    ("value", "exc", "match"),
    [
        (0, ValueError, "concurrency must be >= 1, got 0"),
        (-1, ValueError, "concurrency must be >= 1, got -1"),
        (2.5, TypeError, "concurrency must be an int, got float"),
        (True, TypeError, "concurrency must be an int, got bool"),
    ],
)
async def test_a_bad_limit_is_refused_and_the_old_one_kept(
    value: object, exc: type[Exception], match: str
) -> None:
    async with concurrency("k", 3) as limit:
        with pytest.raises(exc, match=match):
            limit.concurrency = value  # type: ignore[assignment]
        assert limit.concurrency == 3


async def test_name_and_visible_are_read_only() -> None:
    async with concurrency("k", 1) as limit:
        with pytest.raises(AttributeError):
            limit.name = "other"  # type: ignore[misc]
        with pytest.raises(AttributeError):
            limit.visible = False  # type: ignore[misc]
