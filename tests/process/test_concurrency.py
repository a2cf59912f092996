"""concurrency() and concurrency_status()."""

from __future__ import annotations

import logging

import anyio
import pytest

from corral.util import concurrency, concurrency_status
from tests.support.clock import virtual_backend

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> object:
    """Virtual time on both backends: nothing here runs a child process."""
    return virtual_backend(request.param)


async def test_same_key_shares_one_limiter() -> None:
    order: list[str] = []
    first_in = anyio.Event()
    release = anyio.Event()

    async def holder() -> None:
        async with concurrency("api", 1):
            order.append("holder in")
            first_in.set()
            await release.wait()
        order.append("holder out")

    async def waiter() -> None:
        async with concurrency("other display name", 1, key="api"):
            order.append("waiter in")

    async with anyio.create_task_group() as tg:
        tg.start_soon(holder)
        await first_in.wait()
        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        assert order == ["holder in"]
        assert concurrency_status() == {"api": (1, 1)}
        release.set()
    assert order == ["holder in", "holder out", "waiter in"]


async def test_different_keys_are_independent() -> None:
    async with concurrency("a", 1), concurrency("b", 1):
        assert concurrency_status() == {"a": (1, 1), "b": (1, 1)}


async def test_empty_key_defaults_to_name() -> None:
    async with concurrency("name", 2), concurrency("name", 2, key=""):
        assert concurrency_status() == {"name": (2, 2)}


async def test_nested_use_of_one_key_takes_a_slot_each() -> None:
    async with concurrency("k", 3):
        async with concurrency("k", 3):
            assert concurrency_status()["k"] == (2, 3)
        assert concurrency_status()["k"] == (1, 3)
    assert concurrency_status()["k"] == (0, 3)


async def test_slot_is_released_on_exception() -> None:
    with pytest.raises(ZeroDivisionError):
        async with concurrency("k", 1):
            1 / 0  # noqa: B018
    with anyio.fail_after(1):
        async with concurrency("k", 1):
            assert concurrency_status()["k"] == (1, 1)


async def test_at_most_n_at_once() -> None:
    running = peak = 0

    async def worker() -> None:
        nonlocal running, peak
        async with concurrency("pool", 3):
            running += 1
            peak = max(peak, running)
            await anyio.sleep(0.01)
            running -= 1

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(worker)
    assert peak == 3


async def test_cancelled_waiter_takes_no_slot() -> None:
    async with concurrency("k", 1):
        with anyio.move_on_after(0.05) as scope:
            async with concurrency("k", 1):
                pytest.fail("entered a full limiter")
        assert scope.cancelled_caught
        assert concurrency_status()["k"] == (1, 1)
    assert concurrency_status()["k"] == (0, 1)


async def test_a_different_limit_for_a_key_warns_once_and_first_wins(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="corral.concurrency")
    async with concurrency("k", 2):
        for _ in range(3):
            async with concurrency("k", 5):
                pass
        async with concurrency("k", 2):
            pass
    warnings = [r for r in caplog.records if r.name == "corral.concurrency"]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "'k'" in message
    assert "2 slot(s)" in message
    assert "5 slot(s)" in message
    assert "set .concurrency" in message
    assert concurrency_status()["k"] == (0, 2)


async def test_each_different_limit_is_reported_once_per_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="corral.concurrency")
    for key, limit in [("a", 1), ("a", 2), ("a", 3), ("a", 2), ("b", 2), ("b", 1), ("b", 1)]:
        async with concurrency(key, limit):
            pass
    reported = [r.args for r in caplog.records if r.name == "corral.concurrency"]
    assert [(args[0], args[-1]) for args in reported] == [  # type: ignore[index]
        ("a", 2),
        ("a", 3),
        ("b", 1),
    ]


async def test_the_yielded_object_describes_the_limit_while_it_is_used() -> None:
    async with concurrency("api", 3, key="api-key", visible=False) as first:
        assert (first.name, first.visible) == ("api", False)
        assert (first.concurrency, first.value, first.in_use) == (3, 2, 1)
        async with concurrency("other name", 3, key="api-key") as second:
            assert second is first
            assert (first.concurrency, first.value, first.in_use) == (3, 1, 2)
        assert (first.value, first.in_use) == (2, 1)
    # It describes the limit, not the slot, so it stays valid after the block.
    assert (first.concurrency, first.value, first.in_use) == (3, 3, 0)
    assert repr(first) == "<corral concurrency limit 'api': 0 in use of 3>"


async def test_the_yielded_object_has_no_public_constructor() -> None:
    async with concurrency("k", 1) as limit:
        with pytest.raises(TypeError, match="no public constructor"):
            type(limit)()  # type: ignore[call-arg]


async def test_holders_are_admitted_first_come_first_served() -> None:
    order: list[int] = []

    async def waiter(n: int) -> None:
        async with concurrency("fifo", 1):
            order.append(n)

    async with anyio.create_task_group() as tg, concurrency("fifo", 1):
        for n in range(5):
            tg.start_soon(waiter, n)
            await anyio.wait_all_tasks_blocked()
    assert order == [0, 1, 2, 3, 4]


async def test_resizable_is_accepted_and_keyword_only() -> None:
    async with concurrency("k", 2, resizable=True) as limit:
        limit.concurrency = 4
        assert concurrency_status()["k"] == (1, 4)
    with pytest.raises(TypeError, match="resizable must be a bool"):
        concurrency("k", 2, resizable=1)  # type: ignore[arg-type]
    # inspect_ai's fifth positional parameter is `adaptive`, which corral does not
    # have: passing it positionally is refused instead of being taken for `resizable`.
    with pytest.raises(TypeError):
        concurrency("k", 2, None, True, True)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        concurrency("k", 2, adaptive=None)  # type: ignore[call-arg]


async def test_keys_sharing_a_display_name_are_all_listed() -> None:
    async with concurrency("api", 1, key="a"), concurrency("api", 2, key="b"):
        assert concurrency_status() == {"api": (1, 1), "api [b]": (1, 2)}


async def test_invisible_limits_are_not_listed() -> None:
    async with concurrency("hidden", 1, visible=False):
        assert "hidden" not in concurrency_status()


async def test_entering_one_context_manager_twice_is_refused() -> None:
    slot = concurrency("k", 2)
    async with slot:
        with pytest.raises(RuntimeError, match="already in use"):
            await slot.__aenter__()
    # Once left, it may be entered again.
    async with slot:
        assert concurrency_status()["k"] == (1, 2)


async def test_entering_is_a_checkpoint() -> None:
    with anyio.CancelScope() as scope:
        scope.cancel()
        async with concurrency("k", 1):
            pytest.fail("a cancelled scope entered the limiter")
    assert scope.cancelled_caught


@pytest.mark.parametrize(
    ("args", "exc", "match"),
    [
        (("k", 0), ValueError, "concurrency must be >= 1, got 0"),
        (("k", -3), ValueError, "concurrency must be >= 1"),
        (("k", 1.5), TypeError, "concurrency must be an int"),
        (("k", True), TypeError, "concurrency must be an int"),
        ((None, 1), TypeError, "name must be a str"),
        (("k", 1, 7), TypeError, "key must be a str"),
    ],
)
def test_bad_arguments(args: tuple[object, ...], exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        concurrency(*args)  # type: ignore[arg-type]


def test_limiters_belong_to_their_event_loop(caplog: pytest.LogCaptureFixture) -> None:
    """Two runs never share a limiter: trio, trio again, then asyncio."""
    seen: list[dict[str, tuple[int, int]]] = []

    async def use(limit: int) -> None:
        async with concurrency("shared", limit):
            seen.append(concurrency_status())

    anyio.run(use, 1, backend="trio")
    anyio.run(use, 2, backend="trio")
    anyio.run(use, 3, backend="asyncio")
    assert seen == [{"shared": (1, 1)}, {"shared": (1, 2)}, {"shared": (1, 3)}]
    assert not [r for r in caplog.records if r.name == "corral.concurrency"]


def test_status_outside_an_event_loop_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        concurrency_status()
