"""The sandbox registry: decorator, lazy dotted paths, clobber, read-only view, entry points."""

from __future__ import annotations

import importlib.metadata
import logging
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from corral.sandboxes import _registry as registry
from corral.sandboxes._memory import MemorySandboxEnvironment
from corral.sandboxes._registry import (
    register_sandbox,
    registered_sandboxes,
    sandbox_class,
    sandboxenv,
)
from corral.util import SandboxEnvironment

_REAL_ENTRY_POINTS = registry._entry_points
MEMORY = "corral.sandboxes._memory:MemorySandboxEnvironment"


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts from the built-in table (other tests may have added names)."""
    monkeypatch.setattr(registry, "_table", {"local": registry._table["local"]})
    monkeypatch.setattr(registry, "_extras", dict(registry._extras))
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    monkeypatch.setattr(registry, "_entry_points", list)
    monkeypatch.setattr(registry, "_inspect_entry_points_loaded", False)
    monkeypatch.setattr(registry, "_inspect_entry_points", list)


class Other(MemorySandboxEnvironment):
    pass


def test_local_is_registered_lazily() -> None:
    entry = registry._table["local"]
    assert entry == "corral.sandboxes._local:LocalSandboxEnvironment" or isinstance(entry, type)
    cls = sandbox_class("local")
    assert issubclass(cls, SandboxEnvironment)
    assert cls.__name__ == "LocalSandboxEnvironment"


def test_decorator_registers_a_class_and_returns_it() -> None:
    @sandboxenv("deco")
    class Deco(MemorySandboxEnvironment):
        pass

    assert registered_sandboxes()["deco"] is Deco
    assert sandbox_class("deco") is Deco


def test_decorator_on_a_factory_is_called_lazily() -> None:
    calls: list[str] = []

    @sandboxenv("lazy")
    def lazy() -> type[SandboxEnvironment]:
        calls.append("called")
        return MemorySandboxEnvironment

    assert calls == []
    assert sandbox_class("lazy") is MemorySandboxEnvironment
    assert sandbox_class("lazy") is MemorySandboxEnvironment
    assert calls == ["called"]  # resolved once, then remembered
    assert registered_sandboxes()["lazy"] is MemorySandboxEnvironment


def test_decorator_rejects_non_sandbox_classes() -> None:
    with pytest.raises(TypeError, match=r"'bad'.*not a SandboxEnvironment subclass"):
        sandboxenv("bad")(int)


def test_dotted_path_is_imported_on_first_use(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("corral_test_fake_provider")
    module.Provider = Other  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "corral_test_fake_provider", module)
    register_sandbox("fake", "corral_test_fake_provider:Provider")
    assert registered_sandboxes()["fake"] == "corral_test_fake_provider:Provider"
    assert sandbox_class("fake") is Other
    assert registered_sandboxes()["fake"] is Other


def test_dotted_path_with_dots_only() -> None:
    register_sandbox("memory", "corral.sandboxes._memory.MemorySandboxEnvironment")
    assert sandbox_class("memory") is MemorySandboxEnvironment


def test_missing_package_names_it_and_the_extra() -> None:
    register_sandbox("gone", "corral_no_such_package.sandbox:Gone", extra="gone")
    with pytest.raises(ImportError, match="'corral_no_such_package'") as info:
        sandbox_class("gone")
    assert "pip install 'corral[gone]'" in str(info.value)
    assert isinstance(info.value.__cause__, ImportError)


def test_missing_package_in_a_factory() -> None:
    @sandboxenv("factory")
    def factory() -> type[SandboxEnvironment]:
        import corral_no_such_package_either  # type: ignore[import-not-found]  # noqa: F401

        raise AssertionError("unreachable")

    with pytest.raises(ImportError, match="'corral_no_such_package_either'"):
        sandbox_class("factory")


def test_missing_attribute() -> None:
    register_sandbox("noattr", "corral.sandboxes._memory:Nope")
    with pytest.raises(ImportError, match="has no attribute 'Nope'"):
        sandbox_class("noattr")


def test_resolved_object_must_be_a_sandbox_class() -> None:
    register_sandbox("notcls", "corral.sandboxes._memory:MemorySandboxEnvironment.exec")
    with pytest.raises(TypeError, match=r"'notcls'.*not a SandboxEnvironment subclass"):
        sandbox_class("notcls")


def test_clobber_is_needed_to_override() -> None:
    register_sandbox("memory", MEMORY)
    with pytest.raises(ValueError, match=r"'memory' is already registered.*clobber=True"):
        register_sandbox("memory", Other)
    with pytest.raises(ValueError, match="'memory' is already registered"):
        sandboxenv("memory")(Other)
    register_sandbox("memory", Other, clobber=True)
    assert sandbox_class("memory") is Other


CELL = """
from corral.sandboxes.testing import MemorySandboxEnvironment
from corral.util import sandboxenv

@sandboxenv("cell")
class CellSandbox(MemorySandboxEnvironment):
    pass
"""


def test_a_class_defined_again_replaces_the_old_one() -> None:
    """Regression: a notebook cell run twice (or a test module imported under two backends).

    The same ``module:qualname`` defined again raised "already registered";
    it replaces the old class. A different class still needs ``clobber=True``.
    """
    first: dict[str, Any] = {"__name__": "notebook_cell"}
    again: dict[str, Any] = {"__name__": "notebook_cell"}
    exec(compile(CELL, "<cell>", "exec"), first)
    exec(compile(CELL, "<cell>", "exec"), again)
    assert first["CellSandbox"] is not again["CellSandbox"]
    assert sandbox_class("cell") is again["CellSandbox"]
    elsewhere: dict[str, Any] = {"__name__": "another_module"}
    with pytest.raises(ValueError, match=r"'cell' is already registered \(to notebook_cell:Cell"):
        exec(compile(CELL, "<other>", "exec"), elsewhere)
    assert sandbox_class("cell") is again["CellSandbox"]


def test_same_registration_twice_is_fine() -> None:
    register_sandbox("memory", MEMORY)
    register_sandbox("memory", MEMORY)
    # the class named by the lazy path may register itself under that name
    sandboxenv("memory")(MemorySandboxEnvironment)
    assert sandbox_class("memory") is MemorySandboxEnvironment


def test_view_is_read_only_and_live() -> None:
    view = registered_sandboxes()
    with pytest.raises(TypeError):
        view["x"] = MEMORY  # type: ignore[index]
    assert "later" not in view
    register_sandbox("later", MEMORY)
    assert view["later"] == MEMORY


def test_unknown_type_lists_the_known_ones() -> None:
    register_sandbox("zeta", MEMORY)
    register_sandbox("alpha", MEMORY)
    with pytest.raises(ValueError, match="'nope' is not recognized") as info:
        sandbox_class("nope")
    message = str(info.value)
    assert "Known types: 'alpha', 'local', 'zeta'." in message
    assert "corral.sandboxes" in message


@pytest.mark.parametrize(
    ("name", "error"), [("", ValueError), ("  ", ValueError), (None, TypeError), (3, TypeError)]
)
def test_names_are_validated(name: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="name"):
        sandbox_class(name)
    with pytest.raises(error, match="name"):
        register_sandbox(name, MEMORY)
    with pytest.raises(error, match="name"):
        sandboxenv(name)


@pytest.mark.parametrize("path", ["", "nocolon", "pkg:", ":Cls", "pkg:not-an-id"])
def test_dotted_paths_are_validated(path: str) -> None:
    with pytest.raises(ValueError, match="dotted path"):
        register_sandbox("x", path)


def test_register_rejects_other_objects() -> None:
    with pytest.raises(TypeError, match="dotted path or a SandboxEnvironment subclass"):
        register_sandbox("x", int)  # type: ignore[arg-type]


def test_entry_points_are_loaded_once_on_a_miss(monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[int] = []

    def entry_points() -> list[importlib.metadata.EntryPoint]:
        loads.append(1)
        return [
            importlib.metadata.EntryPoint("plugin", MEMORY, registry.ENTRY_POINT_GROUP),
            # a name registered in code wins over an entry point
            importlib.metadata.EntryPoint("local", MEMORY, registry.ENTRY_POINT_GROUP),
        ]

    monkeypatch.setattr(registry, "_entry_points", entry_points)
    assert "plugin" not in registered_sandboxes()
    assert sandbox_class("local").__name__ == "LocalSandboxEnvironment"
    assert loads == []  # a hit does not read entry points
    assert sandbox_class("plugin") is MemorySandboxEnvironment
    with pytest.raises(ValueError, match="Known types: 'local', 'plugin'"):
        sandbox_class("missing")
    assert loads == [1]
    assert sandbox_class("local").__name__ == "LocalSandboxEnvironment"


def test_a_provider_ported_from_inspect_registers_through_inspects_group(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A ported provider keeps `[project.entry-points.inspect_ai]`, whose value is a
    # module that registers its types (with corral.util's @sandboxenv) when imported.
    package = tmp_path / "ported_provider"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "_registry.py").write_text(
        "from corral.sandboxes._memory import MemorySandboxEnvironment\n"
        "from corral.util import sandboxenv\n\n\n"
        "@sandboxenv(name='ported')\n"
        "class PortedSandbox(MemorySandboxEnvironment):\n"
        "    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    group = registry.INSPECT_ENTRY_POINT_GROUP
    loads: list[int] = []

    def inspect_entry_points() -> list[importlib.metadata.EntryPoint]:
        loads.append(1)
        return [
            importlib.metadata.EntryPoint("not_ported", "inspect_ai_only_pkg._registry", group),
            importlib.metadata.EntryPoint("ported_provider", "ported_provider._registry", group),
        ]

    monkeypatch.setattr(registry, "_inspect_entry_points", inspect_entry_points)
    with caplog.at_level(logging.WARNING, logger="corral.sandbox"):
        cls = sandbox_class("ported")
    assert cls.__name__ == "PortedSandbox"
    assert [r.getMessage() for r in caplog.records] == [
        "could not load 'inspect_ai_only_pkg._registry' from the 'inspect_ai' entry-point "
        "group: ModuleNotFoundError: No module named 'inspect_ai_only_pkg'"
    ]
    with pytest.raises(ValueError, match=r"'corral\.sandboxes' or 'inspect_ai'"):
        sandbox_class("missing")
    assert loads == [1]  # read once


def test_default_entry_point_loader_reads_the_group() -> None:
    assert list(_REAL_ENTRY_POINTS()) == list(
        importlib.metadata.entry_points(group="corral.sandboxes")
    )
