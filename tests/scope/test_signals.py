"""Which handlers a task scope installs for SIGTERM and SIGHUP, and what it gives back.

What the handlers do to a running harness is tested on real harness processes
in ``tests/lifetimes``; these tests never send a signal to the test process.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from types import FrameType

import anyio
import pytest

import corral
from corral._scope._signals import SIGNALS_ENV

pytestmark = pytest.mark.anyio

HANDLED = (signal.SIGTERM, signal.SIGHUP)


def _own_handler(signum: int, frame: FrameType | None) -> None:
    raise AssertionError("not to be called")


@pytest.fixture(autouse=True)
def default_handlers() -> Iterator[None]:
    """Each test starts with the default actions, and gets its handlers reset after."""
    previous = {sig: signal.signal(sig, signal.SIG_DFL) for sig in HANDLED}
    yield
    for sig, handler in previous.items():
        signal.signal(sig, handler)


async def test_a_task_handles_sigterm_and_sighup_while_open_and_then_gives_them_back() -> None:
    async with corral.task("t") as task:
        assert task.handle_signals
        inside = [signal.getsignal(sig) for sig in HANDLED]
    assert all(callable(handler) for handler in inside)
    assert [signal.getsignal(sig) for sig in HANDLED] == [signal.SIG_DFL] * 2


async def test_nested_and_concurrent_tasks_share_one_handler_given_back_by_the_last() -> None:
    seen = []
    async with corral.task("outer"):
        installed = signal.getsignal(signal.SIGTERM)
        async with anyio.create_task_group() as tg:

            async def inner(name: str) -> None:
                async with corral.task(name):
                    seen.append(signal.getsignal(signal.SIGTERM))

            tg.start_soon(inner, "a")
            tg.start_soon(inner, "b")
        assert signal.getsignal(signal.SIGTERM) is installed  # the inner ones left it
    assert seen == [installed, installed]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


async def test_a_handler_the_program_installed_or_an_ignored_signal_is_kept() -> None:
    signal.signal(signal.SIGTERM, _own_handler)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as nohup leaves it
    async with corral.task("t"):
        assert signal.getsignal(signal.SIGTERM) is _own_handler
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGTERM) is _own_handler
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN


async def test_a_handler_the_program_installs_inside_the_task_is_not_undone() -> None:
    async with corral.task("t"):
        signal.signal(signal.SIGTERM, _own_handler)
    assert signal.getsignal(signal.SIGTERM) is _own_handler
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL


async def test_handle_signals_false_leaves_the_handlers_alone() -> None:
    async with corral.task("t", handle_signals=False) as task:
        assert not task.handle_signals
        assert [signal.getsignal(sig) for sig in HANDLED] == [signal.SIG_DFL] * 2


async def test_the_environment_variable_turns_signal_handling_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(SIGNALS_ENV, "0")
    async with corral.task("t"):
        assert [signal.getsignal(sig) for sig in HANDLED] == [signal.SIG_DFL] * 2


async def test_a_task_outside_the_main_thread_leaves_the_handlers_alone() -> None:
    def in_a_thread() -> object:
        async def run() -> object:
            async with corral.task("t"):
                return signal.getsignal(signal.SIGTERM)

        return anyio.run(run)

    assert await anyio.to_thread.run_sync(in_a_thread) is signal.SIG_DFL


def test_handle_signals_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="handle_signals"):
        corral.task("t", handle_signals="yes")  # type: ignore[arg-type]
