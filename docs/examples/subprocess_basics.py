"""Running commands with corral.util.subprocess: arguments, input, output and errors."""

import sys

import anyio

from corral.util import subprocess


async def main() -> None:
    # A list is executed directly; a str runs through /bin/sh -c.
    result = await subprocess([sys.executable, "-c", "print('hello')"])
    assert result.stdout == "hello\n"
    result = await subprocess("echo $GREETING | tr a-z A-Z", env={"GREETING": "hi"})
    assert result.stdout == "HI\n"  # env is merged over os.environ

    # Input is written while the output is read, so a large echo cannot deadlock.
    data = b"x" * (8 * 1024 * 1024)
    echoed = await subprocess(["cat"], input=data, text=False)
    assert echoed.stdout == data

    # output_limit keeps exactly the last N bytes of each stream.
    tail = await subprocess(["seq", "1000000"], output_limit=8)  # about 6.9 MB of output
    assert tail.stdout == "1000000\n"

    # A child killed by signal N has returncode -N.
    killed = await subprocess(["sh", "-c", "kill -TERM $$"])
    assert (killed.success, killed.returncode) == (False, -15)

    # A missing program is an error for a list, an exit status of 127 for a shell line.
    try:
        await subprocess(["no-such-program"])
    except FileNotFoundError as exc:
        print("FileNotFoundError:", exc.filename)
    shell = await subprocess("no-such-program")
    assert shell.returncode == 127

    # A timeout raises the builtin TimeoutError, after the child has been stopped.
    try:
        await subprocess(["sleep", "30"], timeout=0.2)
    except TimeoutError as exc:
        print(exc)


anyio.run(main, backend="asyncio")
