"""Running a harness process (``tests/support/harness.py``) for a test to kill.

The harness's commands signal a FIFO once they run, so :func:`start_harness`
returns only when all of them are running; everything it started is killed
and removed when the test ends, whatever the test did.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from corral._core._procfs import cmdline, live_descendants
from tests.support.fifo import Fifo
from tests.support.processes import kill_and_wait, processes_matching, unique_sleep, wait_gone

__all__ = ["GONE_TIMEOUT", "READY_TIMEOUT", "Harness", "HarnessStarter"]

HARNESS = Path(__file__).parent / "harness.py"
#: Generous bounds: a loaded machine is slow to start 40 children, not to kill them.
READY_TIMEOUT = 120.0
GONE_TIMEOUT = 10.0


@dataclass
class Harness:
    process: subprocess.Popen[str]
    fifo: Fifo
    marker: str
    directory: Path
    env: dict[str, str]

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

    def trace(self) -> str:
        """What the harness wrote to its trace file, once it has exited (gzipped then)."""
        import gzip

        return gzip.decompress((self.directory / "trace.log.gz").read_bytes()).decode()

    def run_cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``corral ARGS`` as a process, with the harness's state directory."""
        return subprocess.run(
            [sys.executable, "-m", "corral", *args],
            capture_output=True,
            text=True,
            timeout=READY_TIMEOUT,
            check=False,
            env={**os.environ, **self.env},
        )

    def commands(self) -> list[int]:
        """The live commands.

        The harness has the marker in its own command line, and so has, for a moment,
        a child it is spawning (the guardian, say) until that child calls ``exec``.
        """
        return [
            pid
            for pid in processes_matching(self.marker)
            if str(HARNESS) not in (cmdline(pid) or "")
        ]

    def left_running(self) -> list[int]:
        return wait_gone(self.commands(), GONE_TIMEOUT)

    def read_line(self, timeout: float = READY_TIMEOUT) -> str:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        assert ready, "the harness printed nothing"
        return self.process.stdout.readline()


class HarnessStarter:
    """Starts harness processes, and kills and removes all they left when closed."""

    def __init__(self) -> None:
        self.started: list[Harness] = []

    def __call__(
        self,
        backend: str,
        *,
        samples: int = 0,
        bare: int = 0,
        env: dict[str, str] | None = None,
        sandbox_config: dict[str, object] | None = None,
        **options: object,
    ) -> Harness:
        """Start a harness and wait until all its commands run.

        Args:
            backend: ``"trio"`` or ``"asyncio"``.
            samples: Sandbox samples, each running one command.
            bare: Bare ``subprocess()`` calls.
            env: Environment variables for the harness (on top of ours).
            sandbox_config: An ssh sandbox config for the samples (else they are local).
            options: More options of ``harness.py`` (``style``, ``user``, ...).
        """
        # Not under tmp_path: a command run as another user must reach the FIFO.
        directory = Path(tempfile.mkdtemp(prefix="corral-harness-"))
        directory.chmod(0o755)
        (directory / "tmp").mkdir()
        (directory / "state").mkdir()
        fifo = Fifo(directory / "ready", shared=True)
        marker = unique_sleep()
        argv = [sys.executable, str(HARNESS), backend, str(fifo.path), marker]
        argv += [f"--samples={samples}", f"--bare={bare}"]
        if sandbox_config is not None:
            config_file = directory / "ssh.json"
            config_file.write_text(json.dumps(sandbox_config))
            argv.append(f"--ssh-config={config_file}")
        for name, value in options.items():
            flag = "--" + name.replace("_", "-")
            argv += [flag] if value is True else [f"{flag}={value}"]
        harness_env = {
            "TMPDIR": str(directory / "tmp"),
            "CORRAL_STATE_DIR": str(directory / "state"),
            "CORRAL_TRACE_FILE": str(directory / "trace.log"),
            **(env or {}),
        }
        # A job started in the background (``make test &``) ignores SIGINT, and a
        # child would inherit that; a handler of ours is reset to the default by exec.
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            process = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, **harness_env},
            )
        finally:
            signal.signal(signal.SIGINT, previous)
        harness = Harness(process, fifo, marker, directory, harness_env)
        self.started.append(harness)
        expected = (samples + bare) * (2 if options.get("style") == "setsid" else 1)
        got = fifo.wait_blocking(expected, READY_TIMEOUT)
        if got != expected:
            process.kill()
            _, err = process.communicate()
            pytest.fail(f"only {got} of {expected} commands started; stderr:\n{err}")
        return harness

    def close(self) -> None:
        started, self.started = self.started, []
        for harness in started:
            with contextlib.suppress(ProcessLookupError):
                harness.process.kill()
            harness.process.communicate()
            kill_and_wait(processes_matching(harness.marker))
            harness.fifo.close()
            shutil.rmtree(harness.directory, ignore_errors=True)
