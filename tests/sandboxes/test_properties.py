"""Property tests: what a sample passes to a sandbox runs literally, or is refused by name.

For any argv, env, cwd or file path (text with shell metacharacters, quotes,
spaces, newlines, ``$()``, globs, a leading ``-``, ``=``), the local and the
in-memory providers, through the proxy, either run it exactly as given (the
program sees the same argv, ``printenv`` prints the same value, ``pwd`` the
same directory, a file reads back the same bytes), or refuse it with a
``ValueError`` naming the parameter (a NUL character); and either way another
sample's sandbox goes on working.

Each example runs in an event loop of its own (``anyio.run``), with two fresh
samples, so examples share nothing. Hypothesis is set for reproducible runs:
``derandomize=True`` (examples follow from the test, not from a seed) and no
example database; ``deadline=None``, as a sandbox call's time is not under test.
The SSH provider is left out: its fixtures (a real sshd) live with its tests,
and a connection per example would cost more than this file's budget.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.sandboxes._local import LocalSandboxEnvironment
from corral.sandboxes._memory import MemorySandboxEnvironment
from corral.sandboxes._proxy import SandboxEnvironmentProxy
from corral.util import SandboxEnvironment

PROVIDERS: dict[str, type[SandboxEnvironment]] = {
    "local": LocalSandboxEnvironment,
    "memory": MemorySandboxEnvironment,
}

reproducible = settings(max_examples=50, deadline=None, derandomize=True, database=None)

#: Text a model may send: any character but lone surrogates (which are not text
#: that UTF-8 can carry), NUL included, with the tricky ones made likely.
_TRICKY = ["$(id)", "`id`", "*", "?", "[a]", "~", "-n", "--", "-", "a=b", "=", "'", '"']
_TRICKY += ["\\", "\n", " ", "\t", ";", "|", "&", "$HOME", "%s", "%", "\0"]
_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
words = st.lists(st.one_of(_text, st.sampled_from(_TRICKY)), max_size=4).map("".join)
#: One path component: not empty, no ``/``, not ``.`` or ``..``; short enough for any system.
names = words.filter(lambda w: w not in ("", ".", "..") and "/" not in w and len(w) < 40)
variables = st.from_regex(re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,8}"), fullmatch=True)


def run_in_two_samples(
    provider: str,
    backend: str,
    body: Callable[[SandboxEnvironment], Awaitable[None]],
) -> None:
    """Run *body* in a fresh sample's sandbox, then check a second sample still works."""
    cls = PROVIDERS[provider]

    async def main() -> None:
        first = await cls.sample_init("properties", None, {})
        second = await cls.sample_init("properties", None, {})
        try:
            await body(SandboxEnvironmentProxy(next(iter(first.values()))))
            other = SandboxEnvironmentProxy(next(iter(second.values())))
            assert (await other.exec(["echo", "unaffected"])).stdout == "unaffected\n"
        finally:
            await cls.sample_cleanup("properties", None, first, False)
            await cls.sample_cleanup("properties", None, second, False)

    anyio.run(main, backend=backend)


parametrized = pytest.mark.parametrize(
    ("provider", "backend"),
    [(p, b) for p in PROVIDERS for b in ("trio", "asyncio")],
)


@parametrized
@reproducible
@given(args=st.lists(words, max_size=5))
def test_argv_arrives_exactly(provider: str, backend: str, args: list[str]) -> None:
    async def body(env: SandboxEnvironment) -> None:
        cmd = ["printf", "%s\\0", "first", *args]  # never empty: printf runs its format once
        bad = [i for i, arg in enumerate(cmd) if "\0" in arg]
        if bad:
            with pytest.raises(ValueError, match=rf"cmd\[{bad[0]}\] must not contain a NUL"):
                await env.exec(cmd)
            return
        result = await env.exec(cmd)
        assert result.returncode == 0, result.stderr
        assert result.stdout.split("\0")[:-1] == ["first", *args]

    run_in_two_samples(provider, backend, body)


@parametrized
@reproducible
@given(name=variables, value=words)
def test_env_value_arrives_exactly(provider: str, backend: str, name: str, value: str) -> None:
    key = f"CORRAL_PROP_{name}"  # never PATH, HOME or LD_PRELOAD

    async def body(env: SandboxEnvironment) -> None:
        if "\0" in value:
            with pytest.raises(ValueError, match=rf"env\['{key}'\] must not contain a NUL"):
                await env.exec(["printenv", key], env={key: value})
            return
        result = await env.exec(["printenv", key], env={key: value})
        assert (result.returncode, result.stdout) == (0, f"{value}\n"), result.stderr

    run_in_two_samples(provider, backend, body)


@parametrized
@reproducible
@given(name=names)
def test_cwd_is_taken_literally(provider: str, backend: str, name: str) -> None:
    async def body(env: SandboxEnvironment) -> None:
        if "\0" in name:
            with pytest.raises(ValueError, match="cwd must not contain a NUL"):
                await env.exec(["pwd"], cwd=name)
            return
        base = (await env.exec(["pwd"])).stdout.removesuffix("\n")
        await env.write_file(f"{name}/keep", "")
        result = await env.exec(["pwd"], cwd=name)
        assert (result.returncode, result.stdout) == (0, f"{base}/{name}\n"), result.stderr

    run_in_two_samples(provider, backend, body)


@parametrized
@reproducible
@given(parts=st.lists(names, min_size=1, max_size=3), contents=st.binary(max_size=64))
def test_file_round_trips(provider: str, backend: str, parts: list[str], contents: bytes) -> None:
    path = "/".join(parts)

    async def body(env: SandboxEnvironment) -> None:
        calls: list[Callable[[], Awaitable[Any]]] = [
            lambda: env.write_file(path, contents),
            lambda: env.read_file(path, text=False),
        ]
        if "\0" in path:
            for call in calls:
                with pytest.raises(ValueError, match="file must not contain a NUL"):
                    await call()
            return
        await env.write_file(path, contents)
        assert await env.read_file(path, text=False) == contents

    run_in_two_samples(provider, backend, body)
