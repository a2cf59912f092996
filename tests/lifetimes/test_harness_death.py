"""A harness that is killed leaves nothing running, whatever kills it.

Each test runs a real harness process (``tests/support/harness.py``) with
local-sandbox samples and bare ``subprocess()`` calls, each asleep, kills it
the way a user's machine would (SIGKILL, SIGTERM, SIGHUP), and then looks at
what is left: no process with the test's marker, no sandbox directory. The
harness runs under trio and under asyncio.

Nothing here sleeps: readiness comes through a FIFO, and "gone" is waited
for on pidfds, the harness's guardian's included, with bounds far above what
a loaded machine needs (the benchmarks measure the times).
"""

from __future__ import annotations

import os
import shutil
import signal

import pytest

from tests.support.killable import GONE_TIMEOUT, READY_TIMEOUT, Harness, HarnessStarter
from tests.support.processes import wait_gone

BACKENDS = ["trio", "asyncio"]


def _end(harness: Harness, sig: signal.Signals) -> int:
    """Send *sig* to the harness; wait for it and for its guardian to be gone."""
    guardian = harness.guardian()
    harness.process.send_signal(sig)
    returncode = harness.process.wait(timeout=READY_TIMEOUT)
    assert wait_gone([guardian], GONE_TIMEOUT) == [], "the guardian did not finish"
    return returncode


@pytest.mark.parametrize("style", ["plain", "setsid"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_sigkill_leaves_no_process_and_no_sandbox_directory(
    start_harness: HarnessStarter, backend: str, style: str
) -> None:
    harness = start_harness(backend, samples=20, bare=20, style=style)
    assert len(harness.commands()) >= 40
    assert len(harness.sandbox_dirs()) == 20

    assert _end(harness, signal.SIGKILL) == -signal.SIGKILL

    assert harness.left_running() == []
    assert harness.sandbox_dirs() == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigkill_stops_streamed_commands(start_harness: HarnessStarter, backend: str) -> None:
    """Commands started with exec_remote, their output being read, die with the harness."""
    harness = start_harness(backend, samples=10, style="setsid", stream=True)
    assert len(harness.sandbox_dirs()) == 10

    assert _end(harness, signal.SIGKILL) == -signal.SIGKILL

    assert harness.left_running() == []
    assert harness.sandbox_dirs() == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
@pytest.mark.parametrize("backend", BACKENDS)
def test_sigterm_and_sighup_clean_up_then_end_the_harness_by_that_signal(
    start_harness: HarnessStarter, backend: str, sig: signal.Signals
) -> None:
    harness = start_harness(backend, samples=20, bare=20, style="setsid")

    assert _end(harness, sig) == -sig

    out, err = harness.process.communicate()
    assert "after the task" not in out  # it ended by the signal, as it would have without us
    assert "Traceback" not in err
    # Exit hooks ran first: the trace file is complete (and compressed, as at any exit).
    assert harness.trace().count('"action": "Subprocess"') >= 40
    assert harness.left_running() == []
    assert harness.sandbox_dirs() == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigkill_stops_term_ignoring_commands_and_commands_of_another_user(
    start_harness: HarnessStarter, backend: str
) -> None:
    if shutil.which("sudo") is None or os.geteuid() != 0:
        pytest.skip("needs root and sudo, to run a command as nobody")
    harness = start_harness(backend, samples=5, bare=5, style="ignore-term", user="nobody")

    assert _end(harness, signal.SIGKILL) == -signal.SIGKILL

    assert harness.left_running() == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_second_signal_ends_the_harness_at_once(
    start_harness: HarnessStarter, backend: str
) -> None:
    # Commands that outlive SIGTERM, with a kill grace far longer than the test.
    harness = start_harness(backend, samples=1, bare=1, style="trap-term", kill_grace=3600)
    guardian = harness.guardian()
    harness.process.send_signal(signal.SIGTERM)
    # Both commands report the runtime's SIGTERM: the harness is unwinding.
    assert harness.fifo.wait_blocking(2, READY_TIMEOUT) == 2

    harness.process.send_signal(signal.SIGTERM)

    assert harness.process.wait(timeout=READY_TIMEOUT) == -signal.SIGTERM
    assert wait_gone([guardian], GONE_TIMEOUT) == []
    assert harness.left_running() == []  # the guardian did not wait for the grace


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_sigterm_handler_of_the_program_is_kept(
    start_harness: HarnessStarter, backend: str
) -> None:
    harness = start_harness(backend, bare=1, own_handler=True)

    harness.process.send_signal(signal.SIGTERM)

    assert harness.read_line() == "own handler\n"
    assert harness.process.poll() is None  # the program's handler did not end it
    assert harness.commands() != []  # and its command runs on: nothing was cancelled


@pytest.mark.parametrize("backend", BACKENDS)
def test_ctrl_c_ends_the_harness_by_sigint_with_nothing_left(
    start_harness: HarnessStarter, backend: str
) -> None:
    harness = start_harness(backend, samples=10, bare=10, style="setsid")

    assert _end(harness, signal.SIGINT) == -signal.SIGINT

    _, err = harness.process.communicate()
    assert err.rstrip().endswith("KeyboardInterrupt")  # not an exception group, under trio too
    assert "ExceptionGroup" not in err
    assert harness.left_running() == []
    assert harness.sandbox_dirs() == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_sigterm_the_kernel_gives_to_another_thread_still_wakes_the_loop(
    start_harness: HarnessStarter, backend: str
) -> None:
    # Nothing but the signal can wake the event loop: every command sleeps.
    harness = start_harness(backend, samples=2, bare=2, signals_to_a_thread=True)

    assert _end(harness, signal.SIGTERM) == -signal.SIGTERM

    assert harness.left_running() == []
    assert harness.sandbox_dirs() == []
