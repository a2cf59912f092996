"""The bridge that runs asyncssh's coroutines from trio or asyncio."""

from __future__ import annotations

import asyncio
import threading

import anyio
import anyio.lowlevel
import pytest
import sniffio

from corral.sandboxes._ssh._bridge import run_on_ssh_loop

pytestmark = pytest.mark.anyio


async def test_results_errors_and_the_loop_it_runs_on(anyio_backend: str) -> None:
    async def where(value: int) -> tuple[int, str, int]:
        await asyncio.sleep(0)
        return value, sniffio.current_async_library(), threading.get_ident()

    value, library, thread = await run_on_ssh_loop(where, 7)
    assert (value, library) == (7, "asyncio")
    # Under trio it runs on the SSH loop's own thread; under asyncio, right here.
    assert (thread == threading.get_ident()) == (anyio_backend == "asyncio")

    async def fail() -> None:
        raise KeyError("named")

    with pytest.raises(KeyError, match="named"):
        await run_on_ssh_loop(fail)


async def test_many_calls_at_once_each_get_their_own_result() -> None:
    results: dict[int, int] = {}

    async def square(i: int) -> int:
        await asyncio.sleep(0.001 * (i % 5))
        return i * i

    async def call(i: int) -> None:
        results[i] = await run_on_ssh_loop(square, i)

    async with anyio.create_task_group() as tg:
        for i in range(50):
            tg.start_soon(call, i)
    assert results == {i: i * i for i in range(50)}


async def test_cancellation_waits_for_the_shielded_cleanup() -> None:
    steps: list[str] = []

    async def work() -> None:
        try:
            steps.append("started")
            await asyncio.sleep(30)
        finally:
            with anyio.CancelScope(shield=True):
                await asyncio.sleep(0.05)  # a kill on the remote host, say
                steps.append("cleaned up")

    with anyio.move_on_after(0.1) as scope:
        await run_on_ssh_loop(work)
    assert scope.cancelled_caught
    assert steps == ["started", "cleaned up"]


async def test_a_result_that_beats_the_cancellation_is_kept() -> None:
    async def quick() -> str:
        with anyio.CancelScope(shield=True):
            await asyncio.sleep(0.05)
        return "done"

    results: list[str] = []
    with anyio.CancelScope() as scope:
        scope.cancel()
        results.append(await run_on_ssh_loop(quick))
        await anyio.lowlevel.checkpoint()  # the cancellation is still there
        results.append("not reached")
    assert results == ["done"]
    assert scope.cancelled_caught
