"""The public surface: explicit ``__all__`` everywhere, and a facade that only re-exports."""

from __future__ import annotations

import ast
import importlib
import inspect
import types
from pathlib import Path

import pytest

import corral
import corral.util

PUBLIC_MODULES = ["corral", "corral.runtime", "corral.tracing", "corral.util"]

#: The facade's names. Changing this list is a decision: the facade mirrors
#: ``inspect_ai.util`` and grows as the issues land.
UTIL_NAMES = {
    "TRACE",
    "BaseEvent",
    "DisplayType",
    "Event",
    "ExecResult",
    "InfoEvent",
    "InputEvent",
    "JsonChange",
    "OutputLimitExceededError",
    "ResourceError",
    "SampleLog",
    "SandboxConnection",
    "SandboxEnvironment",
    "SandboxEnvironmentSpec",
    "SandboxEvent",
    "SandboxTimeoutError",
    "SandboxUnavailableError",
    "SpanBeginEvent",
    "SpanEndEvent",
    "Store",
    "StoreEvent",
    "StoreModel",
    "Subtask",
    "SubtaskEvent",
    "Transcript",
    "concurrency",
    "concurrency_status",
    "current_span_id",
    "display_type",
    "input_screen",
    "override_sandbox_output_limit",
    "resource",
    "sandbox",
    "sandbox_default",
    "sandbox_with",
    "sandboxenv",
    "span",
    "store",
    "store_as",
    "store_from_events",
    "store_from_events_as",
    "subprocess",
    "subtask",
    "throttle",
    "trace_action",
    "trace_message",
    "transcript",
}


def test_util_facade_names_do_not_drift() -> None:
    assert set(corral.util.__all__) == UTIL_NAMES


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
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
    assert corral.task.__module__ == "corral.runtime"
    assert corral.Task.statistics.__module__ == "corral.runtime"


def test_package_is_typed() -> None:
    assert (Path(inspect.getfile(corral)).parent / "py.typed").is_file()
