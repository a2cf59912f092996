"""Stream a supervised command's output as it comes, with corral.open_process."""

import anyio

import corral


async def main() -> None:
    script = "for i in 1 2 3; do echo line $i; done; echo oops >&2; exit 3"
    async with corral.open_process(script) as process:
        async for stream, text in process:  # each chunk as the command writes it
            print(stream, repr(text))
    print("exit status", process.returncode)  # exit status 3

    # Interactive: stdin stays open until close_stdin().
    async with corral.open_process(["cat"], stdin_open=True) as cat:
        await cat.write_stdin(b"ping\n")
        print(await anext(cat))  # ('stdout', 'ping\n')
        await cat.close_stdin()
        async for _ in cat:
            pass
    print("cat exit status", cat.returncode)  # cat exit status 0


anyio.run(main, backend="trio")
