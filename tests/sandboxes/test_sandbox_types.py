"""The small sandbox types providers annotate with, and the limits they size buffers from."""

from __future__ import annotations

import dataclasses
import pickle
from typing import get_args

import anyio
import pytest
from pydantic import BaseModel

import corral.util
from corral.sandboxes import max_exec_output_size, max_read_file_size
from corral.sandboxes._memory import MemorySandboxEnvironment
from corral.sandboxes._output_limits import EXEC_OUTPUT_ENV, READ_FILE_ENV
from corral.sandboxes._proxy import SandboxEnvironmentProxy
from corral.util import (
    OutputLimitExceededError,
    SandboxEnvironment,
    SandboxEnvironmentConfigType,
    SandboxEnvironmentLimits,
    SandboxEnvironments,
    SandboxEnvironmentSpec,
    SandboxEnvironmentType,
    SandboxUnavailableError,
    SandboxUserUnsupportedError,
    override_sandbox_output_limit,
)

NEW_NAMES = [
    "SandboxEnvironmentConfigType",
    "SandboxEnvironmentLimits",
    "SandboxEnvironmentType",
    "SandboxEnvironments",
    "SandboxUserUnsupportedError",
    "ComposeBuild",
    "ComposeConfig",
    "ComposeHealthcheck",
    "ComposeService",
    "ComposeVolumeMount",
    "is_compose_yaml",
    "is_dockerfile",
    "parse_compose_yaml",
]


@pytest.mark.parametrize("name", NEW_NAMES)
def test_the_names_providers_import_are_in_the_facade(name: str) -> None:
    assert name in corral.util.__all__
    assert getattr(corral.util, name) is not None


# -- limits ----------------------------------------------------------------------------------


@pytest.fixture
def no_limit_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv(EXEC_OUTPUT_ENV, raising=False)
    monkeypatch.delenv(READ_FILE_ENV, raising=False)
    return monkeypatch


def test_limits_default_to_corrals(no_limit_env: pytest.MonkeyPatch) -> None:
    assert SandboxEnvironmentLimits.MAX_EXEC_OUTPUT_SIZE == 10 * 1024**2 == max_exec_output_size()
    assert SandboxEnvironmentLimits.MAX_READ_FILE_SIZE == 100 * 1024**2 == max_read_file_size()
    assert SandboxEnvironmentLimits.MAX_EXEC_OUTPUT_SIZE_STR == "10 MiB"
    assert SandboxEnvironmentLimits.MAX_READ_FILE_SIZE_STR == "100 MiB"
    assert SandboxEnvironmentLimits().MAX_READ_FILE_SIZE_STR == "100 MiB"  # on an instance too


def test_limits_follow_the_environment(no_limit_env: pytest.MonkeyPatch) -> None:
    no_limit_env.setenv(EXEC_OUTPUT_ENV, str(1024**2 + 1))
    no_limit_env.setenv(READ_FILE_ENV, str(2 * 1024**3))
    assert SandboxEnvironmentLimits.MAX_EXEC_OUTPUT_SIZE == 1024**2 + 1
    assert SandboxEnvironmentLimits.MAX_EXEC_OUTPUT_SIZE_STR == "1048577 bytes"
    assert SandboxEnvironmentLimits.MAX_READ_FILE_SIZE == 2 * 1024**3
    assert SandboxEnvironmentLimits.MAX_READ_FILE_SIZE_STR == "2 GiB"


def test_a_bad_environment_value_is_a_value_error_on_lookup(
    no_limit_env: pytest.MonkeyPatch,
) -> None:
    no_limit_env.setenv(EXEC_OUTPUT_ENV, "200MB")
    with pytest.raises(ValueError, match=EXEC_OUTPUT_ENV):
        SandboxEnvironmentLimits.MAX_EXEC_OUTPUT_SIZE  # noqa: B018
    assert SandboxEnvironmentLimits.MAX_READ_FILE_SIZE == 100 * 1024**2


def test_limits_follow_the_scoped_override(no_limit_env: pytest.MonkeyPatch) -> None:
    with override_sandbox_output_limit(2048, "read_file"):
        assert SandboxEnvironmentLimits.MAX_READ_FILE_SIZE == 2048
        assert SandboxEnvironmentLimits.MAX_READ_FILE_SIZE_STR == "2 KiB"
        assert SandboxEnvironmentLimits.MAX_EXEC_OUTPUT_SIZE == 10 * 1024**2
        with override_sandbox_output_limit(500):
            assert SandboxEnvironmentLimits.MAX_EXEC_OUTPUT_SIZE_STR == "500 bytes"
            assert SandboxEnvironmentLimits.MAX_READ_FILE_SIZE == 500
        assert SandboxEnvironmentLimits.MAX_READ_FILE_SIZE == 2048
    assert SandboxEnvironmentLimits.MAX_READ_FILE_SIZE == 100 * 1024**2


@pytest.mark.parametrize(
    "name",
    [
        "MAX_EXEC_OUTPUT_SIZE",
        "MAX_EXEC_OUTPUT_SIZE_STR",
        "MAX_READ_FILE_SIZE",
        "MAX_READ_FILE_SIZE_STR",
    ],
)
def test_limits_cannot_be_assigned(name: str) -> None:
    with pytest.raises(AttributeError, match=rf"SandboxEnvironmentLimits\.{name} is read-only"):
        setattr(SandboxEnvironmentLimits, name, 1)
    with pytest.raises(AttributeError, match="read-only"):
        setattr(SandboxEnvironmentLimits(), name, 1)
    with pytest.raises(AttributeError, match="read-only"):
        delattr(SandboxEnvironmentLimits, name)
    assert getattr(SandboxEnvironmentLimits, name) != 1


@pytest.mark.anyio
async def test_a_provider_sizing_from_the_limits_agrees_with_the_proxy() -> None:
    """A provider reading the limits in its own task sees the limit the proxy enforces."""
    seen: list[tuple[int, str]] = []

    class Sizing(MemorySandboxEnvironment):
        async def exec(self, *args: object, **kwargs: object) -> corral.util.ExecResult[str]:
            seen.append(
                (
                    SandboxEnvironmentLimits.MAX_EXEC_OUTPUT_SIZE,
                    SandboxEnvironmentLimits.MAX_EXEC_OUTPUT_SIZE_STR,
                )
            )
            return await super().exec(*args, **kwargs)  # type: ignore[arg-type]

    env = SandboxEnvironmentProxy(Sizing())
    caught: list[OutputLimitExceededError] = []

    async def run() -> None:
        with pytest.raises(OutputLimitExceededError) as info:
            await env.exec(["cat"], input="x" * 4096)
        caught.append(info.value)

    with override_sandbox_output_limit(3 * 1024, "exec"):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
    assert seen == [(3072, "3 KiB")]
    assert caught[0].limit_str == "3 KiB"


# -- the other types ---------------------------------------------------------------------------


def test_config_type_is_a_model_or_a_file_name() -> None:
    assert get_args(SandboxEnvironmentConfigType) == (BaseModel, str)
    assert isinstance("compose.yaml", SandboxEnvironmentConfigType)
    assert isinstance(SandboxEnvironmentSpec("local"), SandboxEnvironmentConfigType)
    assert not isinstance(None, SandboxEnvironmentConfigType)


def test_environment_type_is_a_name_a_pair_or_a_spec() -> None:
    assert get_args(SandboxEnvironmentType) == (str, tuple[str, str], SandboxEnvironmentSpec)


def test_sandbox_environments_holds_environments_and_an_optional_cleanup() -> None:
    assert [f.name for f in dataclasses.fields(SandboxEnvironments)] == [
        "environments",
        "cleanup",
    ]
    env: SandboxEnvironment = MemorySandboxEnvironment()
    plain = SandboxEnvironments({"default": env})
    assert plain.environments == {"default": env}
    assert plain.cleanup is None
    calls: list[bool] = []

    async def cleanup(interrupted: bool) -> None:
        calls.append(interrupted)

    with_cleanup = SandboxEnvironments(environments={"default": env}, cleanup=cleanup)
    assert with_cleanup.cleanup is cleanup
    assert with_cleanup == SandboxEnvironments({"default": env}, cleanup)
    assert repr(plain).startswith("SandboxEnvironments(environments={'default': ")


def test_user_unsupported_is_a_runtime_error_of_its_own() -> None:
    error = SandboxUserUnsupportedError("cannot run as 'bob'")
    assert isinstance(error, RuntimeError)
    assert not isinstance(error, SandboxUnavailableError | PermissionError)
    assert str(error) == "cannot run as 'bob'"
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is SandboxUserUnsupportedError
    assert str(again) == "cannot run as 'bob'"
    assert SandboxUserUnsupportedError.__module__ == "corral.util"
