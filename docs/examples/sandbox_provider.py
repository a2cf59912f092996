"""A tiny sandbox provider: a scratch directory per sample, registered with @sandboxenv."""

import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal, overload

import anyio

import corral
from corral.util import (
    ExecResult,
    SandboxEnvironment,
    SandboxTimeoutError,
    sandbox,
    sandboxenv,
    subprocess,
)


@sandboxenv("scratch")
class ScratchSandbox(SandboxEnvironment):
    """Runs commands on this machine, in a directory of its own per sample."""

    def __init__(self, root: Path) -> None:
        self.root = root

    async def exec(
        self,
        cmd: list[str],
        input: str | bytes | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        user: str | None = None,
        timeout: int | float | None = None,
        timeout_retry: bool = True,
        concurrency: bool = True,
    ) -> ExecResult[str]:
        if user is not None:
            raise PermissionError(f"the scratch sandbox cannot run commands as {user!r}")
        # The arguments arrive checked, and the runtime applies `timeout` as a
        # cancellation, on which subprocess() stops the command's whole process group.
        return await subprocess(
            cmd, input=input, cwd=self.root / (cwd or "."), env=env, concurrency=concurrency
        )

    async def write_file(self, file: str, contents: str | bytes) -> None:
        path = self.root / file
        path.parent.mkdir(parents=True, exist_ok=True)
        data = contents.encode() if isinstance(contents, str) else contents
        await anyio.Path(path).write_bytes(data)

    @overload
    async def read_file(self, file: str, text: Literal[True] = True) -> str: ...
    @overload
    async def read_file(self, file: str, text: Literal[False]) -> bytes: ...
    async def read_file(self, file: str, text: bool = True) -> str | bytes:
        data = await anyio.Path(self.root / file).read_bytes()  # FileNotFoundError, ...
        return data.decode() if text else data  # UnicodeDecodeError for invalid UTF-8

    @classmethod
    async def task_init(cls, task_name: str, config: Any) -> None:
        print(f"task_init({task_name!r})")

    @classmethod
    async def sample_init(
        cls, task_name: str, config: Any, metadata: dict[str, Any]
    ) -> dict[str, SandboxEnvironment]:
        root = Path(tempfile.mkdtemp(prefix="scratch-"))
        return {"default": cls(root)}  # the first environment is the default

    @classmethod
    async def sample_cleanup(
        cls,
        task_name: str,
        config: Any,
        environments: dict[str, SandboxEnvironment],
        interrupted: bool,
    ) -> None:
        for env in environments.values():
            assert isinstance(env, ScratchSandbox)
            shutil.rmtree(env.root, ignore_errors=True)
        print(f"sample_cleanup(interrupted={interrupted})")

    @classmethod
    async def task_cleanup(cls, task_name: str, config: Any, cleanup: bool) -> None:
        print(f"task_cleanup(cleanup={cleanup})")


async def main() -> None:
    async with corral.task("scratch-demo", sandbox="scratch") as task:
        for i in range(2):
            async with task.sample(i) as sample:
                await sandbox().write_file("notes/hello.txt", f"hello from sample {i}\n")
                result = await sandbox().exec(["cat", "notes/hello.txt"])
                print(result.stdout, end="")
                # Every call was recorded in the sample's transcript.
                print([event.event for event in sample.transcript.events][-2:])

        async with task.sample(2):
            try:
                await sandbox().exec(["sleep", "30"], timeout=0.2)
            except SandboxTimeoutError as exc:
                print("exec:", exc)

        # A sample that times out is cleaned up with interrupted=True.
        try:
            async with task.sample(3, time_limit=0.2):
                await sandbox().exec(["sleep", "30"])
        except TimeoutError as exc:
            print("sample 3:", exc)


if __name__ == "__main__":
    anyio.run(main)
