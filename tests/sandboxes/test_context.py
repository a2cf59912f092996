"""Finding the sample's sandboxes: sandbox(), sandbox_default() and sandbox_with()."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from corral.sandboxes._lookup import sandbox, sandbox_default, sandbox_environments, sandbox_with
from corral.sandboxes._memory import MemorySandboxEnvironment
from corral.sandboxes._proxy import wrap_environments
from corral.util import SandboxEnvironment

pytestmark = pytest.mark.anyio


def envs(*names: str, **files: dict[str, str | bytes]) -> dict[str, MemorySandboxEnvironment]:
    made = {name: MemorySandboxEnvironment() for name in names}
    made.update({name: MemorySandboxEnvironment(f) for name, f in files.items()})
    return made


# -- sandbox() ------------------------------------------------------------------------------


async def test_no_sandbox() -> None:
    with pytest.raises(ProcessLookupError, match="No sandbox environment has been provided"):
        sandbox()
    with pytest.raises(ProcessLookupError):
        sandbox("default")
    with pytest.raises(ProcessLookupError):
        await sandbox_with("/etc/passwd")
    with pytest.raises(ProcessLookupError), sandbox_default("x"):
        pass  # pragma: no cover


async def test_default_and_named() -> None:
    made = envs("main", "db")
    with sandbox_environments(made):
        assert sandbox() is made["main"]
        assert sandbox("default") is made["main"]
        assert sandbox("main") is made["main"]
        assert sandbox("db") is made["db"]
    with pytest.raises(ProcessLookupError):
        sandbox()


async def test_wrong_name_is_an_error_even_with_one_environment() -> None:
    with (
        sandbox_environments(envs("main")),
        pytest.raises(ValueError, match=r"'other' is not one of .*: 'main'\.$"),
    ):
        sandbox("other")
    with (
        sandbox_environments(envs("main", "db")),
        pytest.raises(ValueError, match=r"'other' is not one of .*: 'main', 'db'\.$"),
    ):
        sandbox("other")


async def test_name_must_be_a_str() -> None:
    with sandbox_environments(envs("main")), pytest.raises(TypeError, match="name"):
        sandbox(3)  # type: ignore[arg-type]


async def test_sandbox_environments_checks_its_argument() -> None:
    with pytest.raises(ValueError, match="at least one"), sandbox_environments({}):
        pass  # pragma: no cover
    with pytest.raises(TypeError, match="mapping"), sandbox_environments([]):  # type: ignore[arg-type]
        pass  # pragma: no cover


async def test_nested_samples_restore_the_outer_one() -> None:
    outer, inner = envs("a"), envs("b")
    with sandbox_environments(outer):
        with sandbox_environments(inner):
            assert sandbox() is inner["b"]
        assert sandbox() is outer["a"]


async def test_sandbox_default_switches_the_default() -> None:
    made = envs("main", "db")
    with sandbox_environments(made):
        with sandbox_default("db"):
            assert sandbox() is made["db"]
            assert sandbox("default") is made["db"]
            assert sandbox("main") is made["main"]
        assert sandbox() is made["main"]
        with pytest.raises(ValueError, match="'nope' is not one of"), sandbox_default("nope"):
            pass  # pragma: no cover
        with pytest.raises(TypeError, match="name"), sandbox_default(None):  # type: ignore[arg-type]
            pass  # pragma: no cover


async def test_children_inherit() -> None:
    made = envs("main", "db")
    seen: list[SandboxEnvironment] = []

    async def child() -> None:
        seen.append(sandbox())
        seen.append(sandbox("db"))

    with sandbox_environments(made):
        async with anyio.create_task_group() as tg:
            tg.start_soon(child)
    assert seen == [made["main"], made["db"]]


async def test_concurrent_samples_are_isolated() -> None:
    results: dict[int, list[Any]] = {}
    made = {i: envs(f"env{i}") for i in range(2)}
    both_in = anyio.Event()
    entered = 0

    async def sample(i: int) -> None:
        nonlocal entered
        with sandbox_environments(made[i]):
            entered += 1
            if entered == 2:
                both_in.set()
            await both_in.wait()
            results[i] = [sandbox(), await sandbox_with("/nope")]
            with pytest.raises(ValueError, match=f"'env{1 - i}'"):
                sandbox(f"env{1 - i}")

    async with anyio.create_task_group() as tg:
        for i in range(2):
            tg.start_soon(sample, i)
    assert results == {0: [made[0]["env0"], None], 1: [made[1]["env1"], None]}


# -- sandbox_with() --------------------------------------------------------------------------


async def test_sandbox_with_finds_the_first_holder() -> None:
    made = envs("a", b={"/data/x.txt": "x"}, c={"/data/x.txt": "x", "rel.txt": "r"})
    with sandbox_environments(made):
        assert await sandbox_with("/data/x.txt") is made["b"]
        assert await sandbox_with("/work/rel.txt") is made["c"]
        assert await sandbox_with("/data/x.txt", name="c") is made["c"]
        assert await sandbox_with("/data/x.txt", name="default") is None
        assert await sandbox_with("/missing") is None
        assert await sandbox_with("/data") is None  # a directory is not a readable file
        with pytest.raises(ValueError, match="'zzz' is not one of"):
            await sandbox_with("/data/x.txt", name="zzz")


async def test_sandbox_with_caches_hits_per_sample() -> None:
    made = envs("a", b={"/f": "x"})
    with sandbox_environments(made):
        assert await sandbox_with("/f") is made["b"]
        probes = len(made["a"].commands) + len(made["b"].commands)
        del made["b"].files["/f"]
        assert await sandbox_with("/f") is made["b"]  # cached: no new probe
        assert len(made["a"].commands) + len(made["b"].commands) == probes
        # a miss is not cached: a file that appears later is found
        assert await sandbox_with("/g") is None
        made["a"].files["/g"] = b"g"
        assert await sandbox_with("/g") is made["a"]
    with sandbox_environments(made):  # a new sample starts with an empty cache
        assert await sandbox_with("/f") is None


async def test_sandbox_with_cache_is_shared_with_children() -> None:
    made = envs(a={"/f": "x"})
    with sandbox_environments(made):
        async with anyio.create_task_group() as tg:
            tg.start_soon(sandbox_with, "/f")
        count = len(made["a"].commands)
        assert await sandbox_with("/f") is made["a"]
        assert len(made["a"].commands) == count


async def test_sandbox_with_on_path() -> None:
    made = envs("a", b={"/usr/bin/python3": "#!"})
    with sandbox_environments(made):
        assert await sandbox_with("python3", on_path=True) is made["b"]
        assert await sandbox_with("echo", on_path=True) is made["a"]
        assert await sandbox_with("nothing", on_path=True) is None
        assert made["b"].commands[-1] == ["which", "nothing"]


class NoTest(MemorySandboxEnvironment):
    """A sandbox without ``test``: sandbox_with falls back to read_file."""

    def __init__(self, files: dict[str, str | bytes], fail: BaseException | None = None) -> None:
        super().__init__(files)
        self.fail = fail

    async def exec(self, cmd: list[str], *args: Any, **kwargs: Any) -> Any:
        if cmd[0] in ("test", "which"):
            raise self.fail or RuntimeError("no test here")
        return await super().exec(cmd, *args, **kwargs)


async def test_sandbox_with_falls_back_to_read_file() -> None:
    made = {"a": NoTest({}), "b": NoTest({"/f": b"\xff"})}
    with sandbox_environments(made):
        assert await sandbox_with("/f") is made["b"]
        assert await sandbox_with("/g") is None


async def test_sandbox_with_on_path_treats_an_unavailable_sandbox_as_a_miss() -> None:
    from corral.util import SandboxUnavailableError

    made = {"a": NoTest({}, fail=SandboxUnavailableError("gone")), "b": MemorySandboxEnvironment()}
    with sandbox_environments(made):
        assert await sandbox_with("echo", on_path=True) is made["b"]


async def test_sandbox_with_through_proxies() -> None:
    made = envs(a={"/f": "x"})
    proxies = wrap_environments(made)
    with sandbox_environments(proxies):
        assert await sandbox_with("/f") is proxies["a"]
