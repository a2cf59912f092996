"""The conformance suite against a provider: here the in-memory one, which lacks a shell."""

from typing import ClassVar

import anyio.lowlevel

from corral.sandboxes.testing import MemorySandboxEnvironment, SandboxConformance
from corral.util import SandboxEnvironment


class TestMemorySandbox(SandboxConformance):
    # The provider under test: the suite makes each environment with its sample_init.
    provider = MemorySandboxEnvironment
    # What a dict of files and a handful of builtins cannot have: those tests are skipped.
    lacks: ClassVar = frozenset(
        {"posix_shell", "special_files", "file_permissions", "native_streaming"}
    )

    # It has no processes to look for in /proc: its running commands are listed instead.
    async def live_processes(self, env: SandboxEnvironment, marker: str) -> list[str]:
        await anyio.lowlevel.checkpoint()
        return [" ".join(cmd) for cmd in MemorySandboxEnvironment.running if marker in cmd]

    def sleeper(self, marker: str) -> list[str]:
        return ["sleep", marker]
