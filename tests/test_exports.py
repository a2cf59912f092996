"""The public surface: explicit ``__all__``, one home per name, a facade that only re-exports."""

from __future__ import annotations

import ast
import enum
import importlib
import inspect
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

import corral
import corral.sandboxes
import corral.sandboxes.testing
import corral.tracing
import corral.util

#: Every public namespace; each public name is exported by exactly one of them.
PUBLIC_MODULES = [
    "corral",
    "corral.sandboxes",
    "corral.sandboxes.testing",
    "corral.tracing",
    "corral.util",
]

#: The facade's names. Changing this list is a decision: the facade mirrors
#: ``inspect_ai.util`` and grows as the issues land.
UTIL_NAMES = {
    "TRACE",
    "BaseEvent",
    "ComposeBuild",
    "ComposeConfig",
    "ComposeHealthcheck",
    "ComposeService",
    "ComposeVolumeMount",
    "DisplayType",
    "Event",
    "ExecCompleted",
    "ExecOutput",
    "ExecRemoteAwaitableOptions",
    "ExecRemoteProcess",
    "ExecRemoteStreamingOptions",
    "ExecResult",
    "ExecStderr",
    "ExecStdout",
    "InfoEvent",
    "InputEvent",
    "JsonChange",
    "Limit",
    "LimitExceededError",
    "LimitScope",
    "OutputLimitExceededError",
    "ResourceError",
    "SampleLimits",
    "SampleLog",
    "SandboxConnection",
    "SandboxEnvironment",
    "SandboxEnvironmentConfigType",
    "SandboxEnvironmentLimits",
    "SandboxEnvironmentSpec",
    "SandboxEnvironmentType",
    "SandboxEnvironments",
    "SandboxEvent",
    "SandboxTimeoutError",
    "SandboxUnavailableError",
    "SandboxUserUnsupportedError",
    "SpanBeginEvent",
    "SpanEndEvent",
    "SpanIdProvider",
    "Store",
    "StoreEvent",
    "StoreModel",
    "StrEnum",
    "Subtask",
    "SubtaskEvent",
    "Transcript",
    "apply_limits",
    "background",
    "collect",
    "concurrency",
    "concurrency_status",
    "current_span_id",
    "display_type",
    "input_screen",
    "is_compose_yaml",
    "is_dockerfile",
    "override_sandbox_output_limit",
    "parse_compose_yaml",
    "resource",
    "sample_limits",
    "sandbox",
    "sandbox_default",
    "sandbox_with",
    "sandboxenv",
    "span",
    "span_id_provider",
    "store",
    "store_as",
    "store_from_events",
    "store_from_events_as",
    "subprocess",
    "subtask",
    "suspend_working_limit",
    "throttle",
    "time_limit",
    "trace_action",
    "trace_message",
    "transcript",
    "warn_once",
    "working_limit",
}


def test_util_facade_names_do_not_drift() -> None:
    assert set(corral.util.__all__) == UTIL_NAMES


def test_each_public_name_has_exactly_one_home() -> None:
    """As trio checks that each name of its core is re-exported by one public module."""
    homes: dict[int, list[str]] = {}
    objects: dict[int, object] = {}
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            value = getattr(module, name)
            if isinstance(value, types.ModuleType) or name == "__version__":
                continue
            homes.setdefault(id(value), []).append(f"{module_name}.{name}")
            objects[id(value)] = value
    shared = sorted(places for places in homes.values() if len(places) > 1)
    assert shared == [], f"exported by more than one public namespace: {shared}"


#: Standard-library objects re-exported as they are, because inspect_ai does so.
STDLIB_ALIASES = {"corral.util.StrEnum": enum.StrEnum}


def test_stdlib_aliases_are_the_stdlib_objects() -> None:
    for path, value in STDLIB_ALIASES.items():
        module_name, _, name = path.rpartition(".")
        assert getattr(importlib.import_module(module_name), name) is value


def test_reprs_name_the_one_public_home() -> None:
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            value = getattr(module, name)
            if f"{module_name}.{name}" in STDLIB_ALIASES:
                continue
            if isinstance(value, type) or inspect.isfunction(value):
                assert value.__module__ == module_name, (name, value.__module__)
                assert value.__qualname__ == name


@pytest.mark.parametrize(
    ("old", "new"),
    [("subprocess", corral.util.subprocess), ("Store", corral.util.Store), ("task", corral.task)],
)
def test_corral_runtime_names_are_deprecated_aliases(old: str, new: object) -> None:
    import corral.runtime

    assert corral.runtime.__all__ == []
    with pytest.warns(DeprecationWarning, match=r"corral\.runtime\.\w+ is deprecated since corral"):
        assert getattr(corral.runtime, old) is new
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        corral.runtime.nothing  # noqa: B018


def test_importing_the_facade_leaves_heavy_dependencies_alone() -> None:
    """Each of these is imported where it is used, not by ``import corral.util``."""
    heavy = ["httpx", "fsspec", "yaml", "asyncssh", "click", "rich", "trio", "jsonpatch"]
    code = (
        "import json, sys, corral.util, corral.sandboxes, corral.tracing;"
        f"print(json.dumps([m for m in {heavy!r} if m in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(done.stdout) == []


@pytest.mark.parametrize("module_name", [*PUBLIC_MODULES, "corral.runtime"])
def test_all_is_complete_and_correct(module_name: str) -> None:
    module = importlib.import_module(module_name)
    declared = set(module.__all__)
    assert len(declared) == len(module.__all__), "duplicates in __all__"
    for name in declared:
        assert hasattr(module, name), f"{module_name}.__all__ names missing {name!r}"
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public <= declared, f"public but not in __all__: {sorted(public - declared)}"


def test_util_facade_holds_no_logic() -> None:
    source = Path(inspect.getfile(corral.util)).read_text()
    for node in ast.parse(source).body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # docstring
        if isinstance(node, ast.ImportFrom):
            continue
        if isinstance(node, ast.Delete) and [getattr(t, "id", None) for t in node.targets] == [
            "fixup_module_metadata"
        ]:
            continue
        if (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Call)
            and getattr(node.value.func, "id", None) == "fixup_module_metadata"
        ):
            continue
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == [
            "__all__"
        ]:
            continue
        pytest.fail(f"corral/util/__init__.py holds more than re-exports: {ast.dump(node)[:80]}")


def test_private_modules_are_hidden_in_reprs() -> None:
    assert corral.util.ExecResult.__module__ == "corral.util"
    assert corral.util.subprocess.__module__ == "corral.util"
    assert corral.util.concurrency.__qualname__ == "concurrency"
    assert corral.task.__module__ == "corral"
    assert corral.Task.statistics.__module__ == "corral"
    assert corral.sandboxes.HostRefusedError.__module__ == "corral.sandboxes"


def test_package_is_typed() -> None:
    assert (Path(inspect.getfile(corral)).parent / "py.typed").is_file()
