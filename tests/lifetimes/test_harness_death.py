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

import contextlib
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from corral._core._procfs import cmdline, live_descendants
from tests.support.fifo import Fifo
from tests.support.processes import kill_and_wait, processes_matching, unique_sleep, wait_gone

HARNESS = Path(__file__).parents[1] / "support" / "harness.py"
BACKENDS = ["trio", "asyncio"]
#: Generous bounds: a loaded machine is slow to start 40 children, not to kill them.
READY_TIMEOUT = 120.0
GONE_TIMEOUT = 10.0


@dataclass
class Harness:
    process: subprocess.Popen[str]
    fifo: Fifo
    marker: str
    directory: Path

    def guardian(self) -> int:
        """The harness's guardian process (a child running ``_reaper.py``)."""
        found = [
            pid
            for pid in live_descendants(self.process.pid)
            if "_reaper.py" in (cmdline(pid) or "")
        ]
        assert len(found) == 1, f"expected one guardian, found {found}"
        return found[0]

    def sandbox_dirs(self) -> list[Path]:
        return sorted((self.directory / "tmp").glob("corral-sandbox-*"))

    def commands(self) -> list[int]:
        """The live commands (the harness has the marker in its own command line)."""
        return [pid for pid in processes_matching(self.marker) if pid != self.process.pid]

    def left_running(self) -> list[int]:
        return wait_gone(self.commands(), GONE_TIMEOUT)

    def read_line(self, timeout: float = READY_TIMEOUT) -> str:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        assert ready, "the harness printed nothing"
        return self.process.stdout.readline()


@pytest.fixture
def start_harness() -> Iterator[Callable[..., Harness]]:
    started: list[Harness] = []

    def start(backend: str, *, samples: int = 0, bare: int = 0, **options: object) -> Harness:
        # Not under tmp_path: a command run as another user must reach the FIFO.
        directory = Path(tempfile.mkdtemp(prefix="corral-harness-"))
        directory.chmod(0o755)
        (directory / "tmp").mkdir()
        fifo = Fifo(directory / "ready", shared=True)
        marker = unique_sleep()
        argv = [sys.executable, str(HARNESS), backend, str(fifo.path), marker]
        argv += [f"--samples={samples}", f"--bare={bare}"]
        for name, value in options.items():
            flag = "--" + name.replace("_", "-")
            argv += [flag] if value is True else [f"{flag}={value}"]
        env = {**os.environ, "TMPDIR": str(directory / "tmp")}
        process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        harness = Harness(process, fifo, marker, directory)
        started.append(harness)
        expected = (samples + bare) * (2 if options.get("style") == "setsid" else 1)
        got = fifo.wait_blocking(expected, READY_TIMEOUT)
        if got != expected:
            process.kill()
            _, err = process.communicate()
            pytest.fail(f"only {got} of {expected} commands started; stderr:\n{err}")
        return harness

    yield start
    for harness in started:
        with contextlib.suppress(ProcessLookupError):
            harness.process.kill()
        harness.process.communicate()
        kill_and_wait(processes_matching(harness.marker))
        harness.fifo.close()
        shutil.rmtree(harness.directory, ignore_errors=True)


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
    start_harness: Callable[..., Harness], backend: str, style: str
) -> None:
    harness = start_harness(backend, samples=20, bare=20, style=style)
    assert len(harness.commands()) >= 40
    assert len(harness.sandbox_dirs()) == 20

    assert _end(harness, signal.SIGKILL) == -signal.SIGKILL

    assert harness.left_running() == []
    assert harness.sandbox_dirs() == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
@pytest.mark.parametrize("backend", BACKENDS)
def test_sigterm_and_sighup_clean_up_then_end_the_harness_by_that_signal(
    start_harness: Callable[..., Harness], backend: str, sig: signal.Signals
) -> None:
    harness = start_harness(backend, samples=20, bare=20, style="setsid")

    assert _end(harness, sig) == -sig

    out, err = harness.process.communicate()
    assert "after the task" not in out  # it ended by the signal, as it would have without us
    assert "Traceback" not in err
    assert harness.left_running() == []
    assert harness.sandbox_dirs() == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigkill_stops_term_ignoring_commands_and_commands_of_another_user(
    start_harness: Callable[..., Harness], backend: str
) -> None:
    if shutil.which("sudo") is None or os.geteuid() != 0:
        pytest.skip("needs root and sudo, to run a command as nobody")
    harness = start_harness(backend, samples=5, bare=5, style="ignore-term", user="nobody")

    assert _end(harness, signal.SIGKILL) == -signal.SIGKILL

    assert harness.left_running() == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_second_signal_ends_the_harness_at_once(
    start_harness: Callable[..., Harness], backend: str
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
    start_harness: Callable[..., Harness], backend: str
) -> None:
    harness = start_harness(backend, bare=1, own_handler=True)

    harness.process.send_signal(signal.SIGTERM)

    assert harness.read_line() == "own handler\n"
    assert harness.process.poll() is None  # the program's handler did not end it
    assert len(harness.commands()) == 1
