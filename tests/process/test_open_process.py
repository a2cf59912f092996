"""``corral.open_process``: a supervised command streamed for the length of a block."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

import corral
from corral._core._settings import subprocess_limiter
from tests.support.fifo import Fifo
from tests.support.processes import processes_matching, unique_sleep

pytestmark = pytest.mark.anyio


async def test_output_comes_as_it_is_written(tmp_path: Path) -> None:
    gate = Fifo(tmp_path / "gate")
    script = f"echo first; read x < '{gate.path}'; echo second >&2; exit 4"
    async with corral.open_process(script) as process:
        chunks = []
        async for chunk in process:
            chunks.append(chunk)
            if chunk == ("stdout", "first\n"):
                gate.release()  # the command waits until the first line came
    assert chunks == [("stdout", "first\n"), ("stderr", "second\n")]
    assert process.returncode == 4


async def test_stdin_open_and_a_slot_held_until_the_end() -> None:
    limiter = subprocess_limiter()
    before = limiter.in_use
    async with corral.open_process(["cat"], input="a", stdin_open=True) as process:
        assert limiter.in_use == before + 1
        await process.write_stdin(b"b")
        await process.close_stdin()
        assert [text async for _, text in process] == ["ab"]
    assert (process.returncode, limiter.in_use) == (0, before)


async def test_leaving_the_block_kills_the_group(no_leftovers: str) -> None:
    script = f"sleep {no_leftovers} & sleep {no_leftovers}; wait"
    seen: list[corral.StreamingProcess] = []

    async def fail_inside() -> None:
        async with corral.open_process(script, concurrency=False) as process:
            seen.append(process)
            while len(processes_matching(no_leftovers)) < 2:  # noqa: ASYNC110 - no signal from sleep
                await anyio.sleep(0.01)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await fail_inside()
    assert seen[0].ended
    assert processes_matching(no_leftovers) == []


async def test_cancelling_the_reader_kills_it_first(tmp_path: Path) -> None:
    marker = unique_sleep()
    ready = Fifo(tmp_path / "ready")
    async with (
        anyio.create_task_group() as tg,
        corral.open_process(f"{ready.shell_ready()}; sleep {marker}") as process,
    ):

        async def read() -> None:
            async for _ in process:
                pass

        tg.start_soon(read)
        await ready.wait()
        tg.cancel_scope.cancel()
    assert process.ended
    assert processes_matching(marker) == []


async def test_bad_arguments_are_named_before_anything_starts() -> None:
    limiter = subprocess_limiter()
    with pytest.raises(TypeError, match="stdin_open"):
        async with corral.open_process(["true"], stdin_open="yes"):  # type: ignore[arg-type]
            pass
    with pytest.raises(ValueError, match="args"):
        async with corral.open_process(["ec\0ho"]):
            pass
    assert limiter.in_use == 0


def _cmdline(pid: int) -> bytes:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read()


def test_no_public_constructor() -> None:
    with pytest.raises(TypeError, match="no public constructor"):
        corral.StreamingProcess()  # type: ignore[call-arg]


async def test_kill_while_the_reader_waits_for_the_exit(no_leftovers: str) -> None:
    """The command closed its output and runs on: kill() from another task ends both."""
    script = f"exec >&- 2>&-; exec sleep {no_leftovers}"
    async with corral.open_process(script) as process:
        chunks: list[object] = []

        async def read() -> None:
            chunks.extend([chunk async for chunk in process])

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(read)
                # Once the shell has exec'ed sleep, its output is closed: the reader
                # sees EOF and waits for the exit.
                while not _cmdline(process.pid).startswith(b"sleep"):  # noqa: ASYNC110
                    await anyio.sleep(0.01)
                await anyio.wait_all_tasks_blocked()
                await process.kill()
    assert (chunks, process.returncode, process.ended) == ([], None, True)
    assert processes_matching(no_leftovers) == []
