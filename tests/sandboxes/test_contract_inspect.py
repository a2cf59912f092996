"""The parts of the sandbox contract inspect_ai 0.3.285 has that providers and tools rely on.

``exec(concurrency=)``, ``connection(user=)``, ``as_type()``, attributes read
through the proxy, ``default_polling_interval()``, ``is_docker_compatible()``,
``config_deserialize()`` (and the spec's JSON round trip) and
``task_init_environment()``, for the local and in-memory providers and the
lifecycle; the SSH provider's are in ``tests/sandboxes/ssh/test_contract_ssh.py``.
"""

from __future__ import annotations

import os
import pwd
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import anyio
import pytest
from pydantic import BaseModel

import corral
from corral._state._events import SandboxEvent
from corral._state._transcript import Transcript, current_transcript
from corral.sandboxes import _registry as registry
from corral.sandboxes._local import LocalSandboxEnvironment
from corral.sandboxes._memory import MemorySandboxEnvironment
from corral.sandboxes._proxy import SandboxEnvironmentProxy
from corral.util import (
    ComposeConfig,
    ExecResult,
    SandboxConnection,
    SandboxEnvironment,
    SandboxEnvironmentSpec,
    sandbox,
    subprocess,
)
from tests.conftest import Fifo

pytestmark = pytest.mark.anyio


@pytest.fixture
def record() -> Iterator[Transcript]:
    fresh = Transcript()
    token = current_transcript.set(fresh)
    try:
        yield fresh
    finally:
        current_transcript.reset(token)


@pytest.fixture(autouse=True)
def own_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registrations made by a test stay in it."""
    monkeypatch.setattr(registry, "_table", dict(registry._table))


def _me() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


# -- exec(concurrency=) ------------------------------------------------------------------------


async def test_concurrency_false_runs_while_the_only_subprocess_slot_is_held(
    fifo: Fifo, tmp_path: Path
) -> None:
    """With max_subprocesses=1 taken, concurrency=False runs at once while a normal exec waits."""
    release = Fifo(tmp_path / "release")
    try:
        async with corral.task("t", sandbox="local", max_subprocesses=1) as task, task.sample(1):
            env = sandbox()
            waited: list[str] = []

            async def normal() -> None:
                waited.append((await env.exec(["echo", "waited"])).stdout)

            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(
                        env.exec, ["sh", "-c", f"{fifo.shell_ready()}; read l < '{release.path}'"]
                    )
                    await fifo.wait()  # the only slot is held now
                    tg.start_soon(normal)
                    free = await env.exec(
                        ["sh", "-c", f"{fifo.shell_ready()}; echo free"], concurrency=False
                    )
                    await fifo.wait()
                    assert free.stdout == "free\n"
                    assert waited == []  # still waiting for the slot
                    assert task.statistics().subprocesses_running == 1
                    release.release()
            assert waited == ["waited\n"]
    finally:
        release.close()


async def test_concurrency_false_takes_no_slot_while_it_runs(fifo: Fifo, tmp_path: Path) -> None:
    """A running concurrency=False command leaves the limit's slot to a normal one."""
    release = Fifo(tmp_path / "release")
    try:
        async with corral.task("t", sandbox="local", max_subprocesses=1) as task, task.sample(1):
            env = sandbox()
            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(
                        lambda: env.exec(
                            ["sh", "-c", f"{fifo.shell_ready()}; read l < '{release.path}'"],
                            concurrency=False,
                        )
                    )
                    await fifo.wait()
                    assert task.statistics().subprocesses_running == 0
                    assert (await env.exec(["echo", "normal"])).stdout == "normal\n"
                    release.release()
    finally:
        release.close()


async def test_local_exec_takes_concurrency_when_called_directly(fifo: Fifo) -> None:
    async with corral.task("t", sandbox="local", max_subprocesses=1) as task, task.sample(1):
        local = sandbox().as_type(LocalSandboxEnvironment)
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(local.exec, ["sh", "-c", f"{fifo.shell_ready()}; exec sleep 600"])
                await fifo.wait()
                result = await local.exec(["echo", "direct"], concurrency=False)
                assert result.stdout == "direct\n"
                tg.cancel_scope.cancel()


async def test_the_proxy_checks_concurrency_by_name_and_does_not_record_it(
    record: Transcript,
) -> None:
    env = SandboxEnvironmentProxy(MemorySandboxEnvironment())
    with pytest.raises(TypeError, match=r"^concurrency must be a bool, got int$"):
        await env.exec(["true"], concurrency=1)  # type: ignore[arg-type]
    await env.exec(["true"], concurrency=False, timeout_retry=False)
    (event,) = [e for e in record.events if isinstance(e, SandboxEvent)]
    assert event.options == {"timeout_retry": False}


class _Recording(MemorySandboxEnvironment):
    seen: ClassVar[list[bool]] = []

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
        self.seen.append(concurrency)
        return await super().exec(cmd, input, cwd, env, user, timeout, timeout_retry)


class _Keywords(MemorySandboxEnvironment):
    seen: ClassVar[list[dict[str, Any]]] = []

    async def exec(self, cmd: list[str], **options: Any) -> ExecResult[str]:  # type: ignore[override]
        self.seen.append(options)
        return await super().exec(cmd)


class _Old(MemorySandboxEnvironment):
    """A provider written before exec() took concurrency= (and connection() took user=)."""

    async def exec(  # type: ignore[override]
        self,
        cmd: list[str],
        input: str | bytes | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        user: str | None = None,
        timeout: int | float | None = None,
        timeout_retry: bool = True,
    ) -> ExecResult[str]:
        return await super().exec(cmd, input, cwd, env, user, timeout, timeout_retry)

    async def connection(self) -> SandboxConnection:  # type: ignore[override]
        return SandboxConnection(type="old", command="true")


async def test_the_proxy_passes_concurrency_to_providers_that_take_it() -> None:
    _Recording.seen.clear()
    _Keywords.seen.clear()
    env = SandboxEnvironmentProxy(_Recording())
    await env.exec(["true"])
    await env.exec(["true"], concurrency=False)
    assert _Recording.seen == [True, False]
    await SandboxEnvironmentProxy(_Keywords()).exec(["true"], concurrency=False)
    assert _Keywords.seen[0]["concurrency"] is False
    # A provider without the parameter runs the command as it always did.
    assert (
        await SandboxEnvironmentProxy(_Old()).exec(["echo", "x"], concurrency=False)
    ).stdout == ("x\n")


# -- connection(user=) -------------------------------------------------------------------------


def _fake_sudo(directory: Path) -> None:
    """A ``sudo`` on PATH that writes its options to ``sudo-args`` and runs what follows ``--``."""
    script = directory / "sudo"
    script.write_text(
        "#!/bin/sh\n"
        f'printf "%s " "$@" > {shlex.quote(str(directory / "sudo-args"))}\n'
        'while [ "$1" != "--" ]; do shift; done\nshift\nexec "$@"\n'
    )
    script.chmod(0o755)


async def test_local_connection_as_another_user_goes_through_sudo(tmp_path: Path) -> None:
    _fake_sudo(tmp_path)
    async with corral.task("t", sandbox="local") as task, task.sample(1):
        env = sandbox()
        directory = env.as_type(LocalSandboxEnvironment).directory
        plain = await env.connection()
        assert await env.connection(user=None) == plain
        assert await env.connection(user=_me()) == plain  # the current user: no sudo
        assert "sudo" not in plain.command
        other = await env.connection(user="corral-nobody")
        assert other.type == "local"
        result = await subprocess(
            ["sh", "-c", other.command],
            input="pwd\n",
            env={"SHELL": "/bin/sh", "PATH": f"{tmp_path}:{os.environ['PATH']}"},
        )
    assert result.stdout.strip() == directory
    assert (tmp_path / "sudo-args").read_text().split() == ["-u", "corral-nobody", "--", "/bin/sh"]


async def test_proxy_connection_checks_user_and_spares_old_providers() -> None:
    env = SandboxEnvironmentProxy(MemorySandboxEnvironment())
    assert (await env.connection(user="root")).type == "memory"
    with pytest.raises(TypeError, match=r"^user must be a str"):
        await env.connection(user=1)  # type: ignore[arg-type]
    old = SandboxEnvironmentProxy(_Old())
    assert (await old.connection()).type == "old"
    assert (await old.connection(user=None)).type == "old"
    with pytest.raises(TypeError, match=r"_Old.connection\(\) does not take user="):
        await old.connection(user="root")


async def test_the_base_connection_is_not_implemented() -> None:
    class Bare(MemorySandboxEnvironment):
        connection = SandboxEnvironment.connection

    with pytest.raises(NotImplementedError):
        await SandboxEnvironmentProxy(Bare()).connection(user="root")


# -- as_type and attributes through the proxy ------------------------------------------------


async def test_as_type_on_the_environment_and_through_the_proxy() -> None:
    async with corral.task("t", sandbox="local") as task, task.sample(1):
        env = sandbox()
        assert isinstance(env, SandboxEnvironmentProxy)
        inner = env.inner
        assert env.as_type(LocalSandboxEnvironment) is inner
        assert env.as_type(SandboxEnvironment) is inner  # type: ignore[type-abstract]
        assert env.as_type(SandboxEnvironmentProxy) is env
        assert inner.as_type(LocalSandboxEnvironment) is inner
        with pytest.raises(
            TypeError,
            match=r"^Expected instance of MemorySandboxEnvironment, got LocalSandboxEnvironment$",
        ):
            env.as_type(MemorySandboxEnvironment)
        with pytest.raises(TypeError, match="got LocalSandboxEnvironment"):
            inner.as_type(MemorySandboxEnvironment)
        with pytest.raises(TypeError, match="sandbox_cls must be a class"):
            env.as_type("LocalSandboxEnvironment")  # type: ignore[arg-type]


async def test_public_attributes_of_the_wrapped_environment_read_through_the_proxy() -> None:
    async with corral.task("t", sandbox="local") as task, task.sample(1):
        env: Any = sandbox()
        inner = env.inner
        assert env.directory == inner.directory
        assert "directory" in dir(env)
        # Not the provider's class: isinstance answers for the proxy.
        assert not isinstance(env, LocalSandboxEnvironment)
        # The proxy's own methods are never shadowed by the provider's.
        assert env.exec.__self__ is env
        assert env.read_file.__func__ is SandboxEnvironmentProxy.read_file
        with pytest.raises(AttributeError, match="private attributes"):
            _ = env._directory
        with pytest.raises(AttributeError, match="no_such_thing"):
            _ = env.no_such_thing


# -- default_polling_interval, is_docker_compatible ------------------------------------------


async def test_default_polling_interval() -> None:
    assert MemorySandboxEnvironment().default_polling_interval() == 2
    local = LocalSandboxEnvironment("/nonexistent")
    assert local.default_polling_interval() == 0.2
    assert SandboxEnvironmentProxy(local).default_polling_interval() == 0.2


class _Compose(MemorySandboxEnvironment):
    @classmethod
    def config_files(cls) -> list[str]:
        return ["compose.yaml", "Dockerfile"]


def test_is_docker_compatible() -> None:
    assert SandboxEnvironment.is_docker_compatible() is False
    assert LocalSandboxEnvironment.is_docker_compatible() is False
    assert MemorySandboxEnvironment.is_docker_compatible() is False
    assert _Compose.is_docker_compatible() is True


def test_a_docker_compatible_provider_gets_a_compose_config() -> None:
    registry.register_sandbox("compose-test", _Compose)
    compose = {"services": {"default": {"image": "python:3.12"}}}
    spec = SandboxEnvironmentSpec("compose-test", compose)
    assert isinstance(spec.config, ComposeConfig)
    assert spec.config.services["default"].image == "python:3.12"
    # A dict that is not a compose file stays a dict (the provider has no model).
    assert SandboxEnvironmentSpec("compose-test", {"x": 1}).config == {"x": 1}
    # The same dict for a provider that is not docker-compatible stays a dict.
    assert SandboxEnvironmentSpec("local", compose).config == compose


# -- config_deserialize and the spec's JSON round trip ----------------------------------------


class ModelledConfig(BaseModel):
    size: int
    label: str = "x"


class _Modelled(MemorySandboxEnvironment):
    """A provider with a configuration model, which records the config of every call."""

    calls: ClassVar[list[tuple[str, Any]]] = []
    env_seen: ClassVar[list[str | None]] = []

    @classmethod
    def config_deserialize(cls, config: dict[str, Any]) -> BaseModel:
        return ModelledConfig.model_validate(config)

    @classmethod
    async def task_init_environment(cls, config: Any, metadata: dict[str, Any]) -> dict[str, str]:
        cls.calls.append(("task_init_environment", config))
        return {"MODELLED_IMAGE": metadata["image"]} if "image" in metadata else {}

    @classmethod
    async def task_init(cls, task_name: str, config: Any) -> None:
        cls.calls.append(("task_init", config))
        cls.env_seen.append(os.environ.get("MODELLED_IMAGE"))

    @classmethod
    async def sample_init(
        cls, task_name: str, config: Any, metadata: dict[str, Any]
    ) -> dict[str, SandboxEnvironment]:
        cls.calls.append(("sample_init", config))
        return {"default": cls()}

    @classmethod
    async def sample_cleanup(
        cls,
        task_name: str,
        config: Any,
        environments: dict[str, SandboxEnvironment],
        interrupted: bool,
    ) -> None:
        cls.calls.append(("sample_cleanup", config))

    @classmethod
    async def task_cleanup(cls, task_name: str, config: Any, cleanup: bool) -> None:
        cls.calls.append(("task_cleanup", config))


@pytest.fixture
def modelled() -> type[_Modelled]:
    _Modelled.calls.clear()
    _Modelled.env_seen.clear()
    registry.register_sandbox("modelled", _Modelled)
    return _Modelled


def test_the_base_config_deserialize_is_not_implemented() -> None:
    with pytest.raises(NotImplementedError, match="config_deserialize"):
        SandboxEnvironment.config_deserialize({"a": 1})


def test_a_spec_round_trips_through_json_with_the_providers_model(
    modelled: type[_Modelled],
) -> None:
    spec = SandboxEnvironmentSpec(type="modelled", config=ModelledConfig(size=3))
    again = SandboxEnvironmentSpec.model_validate_json(spec.model_dump_json())
    assert again == spec
    assert isinstance(again.config, ModelledConfig)
    assert again.config == ModelledConfig(size=3)
    # A dict given for it becomes the model too.
    assert SandboxEnvironmentSpec("modelled", {"size": 4}).config == ModelledConfig(size=4)
    # A string config and no config are kept as they are.
    assert SandboxEnvironmentSpec.model_validate_json(
        '{"type":"modelled","config":"f"}'
    ).config == ("f")
    assert SandboxEnvironmentSpec.model_validate_json('{"type":"modelled"}').config is None
    # A dict it cannot turn into a model is kept as it is:
    # an unknown type (a log from a machine with another provider installed).
    unknown = SandboxEnvironmentSpec.model_validate_json('{"type":"nowhere","config":{"k":"v"}}')
    assert unknown.config == {"k": "v"}
    # A provider without a model of its own.
    assert SandboxEnvironmentSpec("local", {"k": "v"}).config == {"k": "v"}
    # A dict the provider refuses: kept here, refused when it reaches the provider.
    assert SandboxEnvironmentSpec("modelled", {"size": "many"}).config == {"size": "many"}
    # An empty dict is not a config to turn into anything.
    assert SandboxEnvironmentSpec("modelled", {}).config == {}


async def test_every_lifecycle_call_gets_the_model(modelled: type[_Modelled]) -> None:
    # Made before the provider is known, so the spec holds the dict.
    registry._table.pop("modelled")
    spec = SandboxEnvironmentSpec("modelled", {"size": 5})
    assert spec.config == {"size": 5}
    registry.register_sandbox("modelled", _Modelled)
    async with corral.task("t", sandbox=spec) as task, task.sample(1):
        assert isinstance(sandbox().as_type(_Modelled), _Modelled)
    expected = ModelledConfig(size=5)
    assert [name for name, _ in modelled.calls] == [
        "task_init_environment",
        "task_init",
        "task_init_environment",
        "sample_init",
        "sample_cleanup",
        "task_cleanup",
    ]
    assert all(config == expected for _, config in modelled.calls), modelled.calls


async def test_a_refused_dict_is_refused_at_task_entry(modelled: type[_Modelled]) -> None:
    spec = SandboxEnvironmentSpec("modelled", {"size": "many"})
    with pytest.raises(ValueError, match="size"):
        async with corral.task("t", sandbox=spec):
            pass
    assert modelled.calls == []


# -- task_init_environment ------------------------------------------------------------------


async def test_task_init_runs_once_per_environment_the_samples_ask_for(
    modelled: type[_Modelled],
) -> None:
    assert await SandboxEnvironment.task_init_environment(None, {"a": "b"}) == {}
    os.environ.pop("MODELLED_IMAGE", None)
    spec = SandboxEnvironmentSpec("modelled", ModelledConfig(size=1))
    async with corral.task("t", sandbox=spec) as task:
        samples: list[dict[str, Any]] = [
            {"image": "a"},
            {},
            {"image": "b"},
            {"image": "a"},
            {"other": 1},
        ]
        for i, metadata in enumerate(samples):
            async with task.sample(i, metadata=metadata):
                pass
        # One task_init for the task (no variables), one for each distinct image.
        assert modelled.env_seen == [None, "a", "b"]
        assert "MODELLED_IMAGE" not in os.environ  # set only while task_init ran
    cleanups = [name for name, _ in modelled.calls if name == "task_cleanup"]
    assert len(cleanups) == 3
    environment_calls = [name for name, _ in modelled.calls if name == "task_init_environment"]
    assert len(environment_calls) == 6  # the task's sandbox, then each sample


async def test_task_init_environment_must_return_str_to_str(
    modelled: type[_Modelled], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def wrong(config: Any, metadata: dict[str, Any]) -> Any:
        return {"N": 1}

    monkeypatch.setattr(_Modelled, "task_init_environment", wrong)
    with pytest.raises(TypeError, match=r"_Modelled.task_init_environment\(\) must return"):
        async with corral.task("t", sandbox=("modelled", None)):
            pass
