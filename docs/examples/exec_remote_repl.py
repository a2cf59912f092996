"""Drive an interactive program (a Python REPL) through exec_remote's stdin and stdout."""

import anyio

import corral
from corral.util import (
    ExecCompleted,
    ExecRemoteProcess,
    ExecRemoteStreamingOptions,
    ExecStdout,
    sandbox,
)


async def ask(repl: ExecRemoteProcess, line: str) -> str:
    """Send one line to the REPL and return the line it prints back."""
    await repl.write_stdin(line + "\n")
    answer = ""
    while not answer.endswith("\n"):
        event = await anext(repl)
        if isinstance(event, ExecStdout):  # prompts go to stderr: skip them
            answer += event.data
    return answer.strip()


async def main() -> None:
    async with corral.task("repl", sandbox="local") as task, task.sample(1):
        repl = await sandbox().exec_remote(
            ["python3", "-q", "-u", "-i"],
            ExecRemoteStreamingOptions(stdin_open=True),
        )
        print(await ask(repl, "6 * 7"))  # 42
        print(await ask(repl, "import sys; sys.version_info.major"))  # 3
        await repl.close_stdin()  # end of input: the REPL exits
        async for event in repl:
            if isinstance(event, ExecCompleted):
                print("exit code", event.exit_code)  # exit code 0


anyio.run(main)
