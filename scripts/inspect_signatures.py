"""Snapshot the signatures of ``inspect_ai.util`` that ``corral.util`` promises to match.

Usage::

    python scripts/inspect_signatures.py inspect_ai-0.3.285-py3-none-any.whl \\
        tests/compat/inspect_0_3_285_signatures.json

The wheel is read, never installed or imported: ``inspect_ai.util`` pulls in
some forty packages, so the signatures come from its source, parsed with
:mod:`ast`. Each name of ``inspect_ai.util.__all__`` (all of them, so that a
name ``corral.util`` adds later is checked without a new snapshot) is
followed through the ``import`` statements to the ``def``, ``class`` or
assignment that defines it, and described as JSON:

* a function: its parameters (name, kind, default as source text), whether
  it is ``async``, and whether it is wrapped as a (sync or async) context
  manager;
* a class: its constructor parameters (an ``__init__`` of its own, or the
  fields of a dataclass or pydantic model, inherited ones included) and the
  public methods defined in its body (``SandboxEnvironment``'s methods, class
  methods and static methods are all in it, abstract or not);
* anything else (a type alias, a re-exported builtin): its kind and source.

``tests/compat/test_signatures.py`` compares ``corral.util`` with the
snapshot, for the names both export, so ``inspect_ai`` is not needed to run
the tests. Run this again for a new ``inspect_ai`` release, and review the
test's failures.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Source", "describe_names", "main", "module_all"]

#: Decorators after which a function returns a context manager instead of its own result.
_CONTEXT_MANAGERS = {"contextmanager": "sync", "asynccontextmanager": "async"}
#: Base classes whose annotated class attributes are constructor fields.
_MODEL_BASES = {"BaseModel", "StoreModel", "BaseSettings"}


@dataclass
class Source:
    """The Python modules of a wheel (or a directory), found by dotted name."""

    files: dict[str, str] = field(default_factory=dict)
    _trees: dict[str, ast.Module] = field(default_factory=dict)

    @classmethod
    def from_wheel(cls, wheel: Path) -> Source:
        """Every ``.py`` file in the wheel, keyed by its path in the archive."""
        with zipfile.ZipFile(wheel) as archive:
            files = {
                name: archive.read(name).decode("utf-8")
                for name in archive.namelist()
                if name.endswith(".py")
            }
        return cls(files)

    def module(self, name: str) -> tuple[str, ast.Module] | None:
        """The path and parsed tree of module *name*, or ``None`` if the source lacks it."""
        base = name.replace(".", "/")
        for path in (f"{base}.py", f"{base}/__init__.py"):
            if path in self.files:
                if path not in self._trees:
                    self._trees[path] = ast.parse(self.files[path], filename=path)
                return path, self._trees[path]
        return None


def module_all(source: Source, module: str) -> list[str]:
    """The names in *module*'s ``__all__`` list, in the order written."""
    found = source.module(module)
    if found is None:
        raise ValueError(f"module {module!r} is not in the source")
    for node in found[1].body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
            and isinstance(node.value, ast.List | ast.Tuple)
        ):
            return [ast.literal_eval(e) for e in node.value.elts]
    raise ValueError(f"module {module!r} has no literal __all__")


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The module an ``ImportFrom`` in *module* reads, made absolute."""
    if node.level == 0:
        return node.module or ""
    parts = module.split(".")
    if not is_package:
        parts = parts[:-1]
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join([*parts, node.module] if node.module else parts)


def _find(source: Source, module: str, name: str, depth: int = 0) -> tuple[str, ast.stmt] | None:
    """The statement defining *name* as seen from *module*, following imports."""
    found = source.module(module)
    if found is None or depth > 20:
        return None
    path, tree = found
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if node.name == name and not _is_overload(node):
                return module, node
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if name in [t.id for t in targets if isinstance(t, ast.Name)]:
                return module, node
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    target = _absolute(module, path.endswith("__init__.py"), node)
                    inner = _find(source, target, alias.name, depth + 1)
                    if inner is None:
                        # outside the source (the standard library): say where from
                        return target, node
                    return inner
    return None


def _is_overload(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> bool:
    return any(_decorator_name(d) == "overload" for d in node.decorator_list)


def _decorator_name(node: ast.expr) -> str:
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return ast.unparse(node)


def _parameters(args: ast.arguments, *, drop_first: bool) -> list[dict[str, Any]]:
    """Parameters as ``{"name", "kind", "default"}``, in order (``default`` is source text)."""
    params: list[dict[str, Any]] = []
    positional = [*args.posonlyargs, *args.args]
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults))
    defaults += list(args.defaults)
    for index, (arg, default) in enumerate(zip(positional, defaults, strict=True)):
        # ``__name`` is positional-only by the older convention (PEP 484), as type checkers read it
        dunder = arg.arg.startswith("__") and not arg.arg.endswith("__")
        posonly = index < len(args.posonlyargs) or dunder
        kind = "POSITIONAL_ONLY" if posonly else "POSITIONAL_OR_KEYWORD"
        params.append(_param(arg.arg, kind, default))
    if args.vararg is not None:
        params.append(_param(args.vararg.arg, "VAR_POSITIONAL", None))
    for arg, kw_default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        params.append(_param(arg.arg, "KEYWORD_ONLY", kw_default))
    if args.kwarg is not None:
        params.append(_param(args.kwarg.arg, "VAR_KEYWORD", None))
    return params[1:] if drop_first and params else params


def _param(name: str, kind: str, default: ast.expr | None) -> dict[str, Any]:
    return {"name": name, "kind": kind, "default": _default(default)}


def _default(node: ast.expr | None) -> str | None:
    """A default as source text; ``Field(default=x)`` and ``field(default=x)`` as ``x``.

    ``None`` means "no default" (a required parameter), and a default made by
    a factory is ``"<factory>"``, as ``inspect.signature`` shows a dataclass's.
    """
    if node is None:
        return None
    if isinstance(node, ast.Call) and _decorator_name(node.func) in ("Field", "field"):
        for keyword in node.keywords:
            if keyword.arg == "default":
                return ast.unparse(keyword.value)
            if keyword.arg == "default_factory":
                return "<factory>"
        if node.args and not (isinstance(node.args[0], ast.Constant) and node.args[0].value is ...):
            return ast.unparse(node.args[0])
        return None
    return ast.unparse(node)


def _function(
    node: ast.FunctionDef | ast.AsyncFunctionDef, *, method: bool = False
) -> dict[str, Any]:
    decorators = [_decorator_name(d) for d in node.decorator_list]
    kind = "function"
    if method:
        kind = next(
            (d for d in decorators if d in ("classmethod", "staticmethod", "property")), "method"
        )
    wrapped = next((_CONTEXT_MANAGERS[d] for d in decorators if d in _CONTEXT_MANAGERS), None)
    described: dict[str, Any] = {
        "kind": kind,
        "async": isinstance(node, ast.AsyncFunctionDef) and wrapped is None,
        "context_manager": wrapped,
    }
    if kind == "property":
        return {"kind": kind}
    if method and kind != "staticmethod":
        described["parameters"] = _parameters(node.args, drop_first=True)
    else:
        described["parameters"] = _parameters(node.args, drop_first=False)
    if method:
        described["abstract"] = "abstractmethod" in decorators
    return described


def _fields(source: Source, module: str, node: ast.ClassDef) -> list[dict[str, Any]] | None:
    """Constructor parameters of a dataclass or pydantic model (``None``: neither).

    Fields come in definition order, a base's first. A pydantic model whose
    ``model_config`` (its own or a base's) has ``extra="allow"`` ends with
    ``**extra_data``, as ``inspect.signature`` shows it.
    """
    bases = [_decorator_name(b) for b in node.bases]
    dataclass_ = any(_decorator_name(d) == "dataclass" for d in node.decorator_list)
    inherited: list[dict[str, Any]] = []
    model = dataclass_ or any(b in _MODEL_BASES for b in bases)
    for base in node.bases:
        found = _find(source, module, _decorator_name(base))
        if found is not None and isinstance(found[1], ast.ClassDef):
            parent = _fields(source, found[0], found[1])
            if parent is not None:
                inherited.extend(parent)
                model = True
    if not model:
        return None
    fields = {p["name"]: p for p in inherited}
    extra = fields.pop("extra_data", None)
    kind = "POSITIONAL_OR_KEYWORD" if dataclass_ else "KEYWORD_ONLY"
    for stmt in node.body:
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            name = stmt.target.id
            if name.startswith("_") or ast.unparse(stmt.annotation).startswith("ClassVar"):
                continue
            fields[name] = _param(name, kind, stmt.value)
        elif _allows_extra(stmt):
            extra = _param("extra_data", "VAR_KEYWORD", None)
    return [*fields.values(), *([extra] if extra else [])]


def _allows_extra(stmt: ast.stmt) -> bool:
    """Whether *stmt* is ``model_config = ConfigDict(extra="allow")`` (or a dict saying so)."""
    if not (
        isinstance(stmt, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "model_config" for t in stmt.targets)
    ):
        return False
    value = stmt.value
    if isinstance(value, ast.Call):
        pairs = [(k.arg, k.value) for k in value.keywords]
    elif isinstance(value, ast.Dict):
        pairs = [
            (k.value if isinstance(k, ast.Constant) and isinstance(k.value, str) else None, v)
            for k, v in zip(value.keys, value.values, strict=True)
        ]
    else:
        return False
    return any(
        key == "extra" and isinstance(v, ast.Constant) and v.value == "allow" for key, v in pairs
    )


def _class(source: Source, module: str, node: ast.ClassDef) -> dict[str, Any]:
    methods: dict[str, Any] = {}
    init: list[dict[str, Any]] | None = None
    for stmt in node.body:
        if not isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef) or _is_overload(stmt):
            continue
        if stmt.name == "__init__":
            init = _parameters(stmt.args, drop_first=True)
        elif not stmt.name.startswith("_") or stmt.name == "__call__":
            methods[stmt.name] = _function(stmt, method=True)
    if init is None:
        init = _fields(source, module, node)
    return {
        "kind": "class",
        "bases": [ast.unparse(b) for b in node.bases],
        "init": init,
        "methods": dict(sorted(methods.items())),
    }


def describe_names(source: Source, module: str, names: list[str]) -> dict[str, Any]:
    """Describe each of *names* as ``module`` exports it (see the module docstring)."""
    described: dict[str, Any] = {}
    for name in names:
        found = _find(source, module, name)
        if found is None:
            raise ValueError(f"{name!r} is not defined in the source of {module!r}")
        where, node = found
        entry: dict[str, Any]
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            entry = _function(node)
        elif isinstance(node, ast.ClassDef):
            entry = _class(source, where, node)
        elif isinstance(node, ast.ImportFrom):
            entry = {"kind": "external", "source": f"{where}.{name}"}
        else:
            entry = {"kind": "alias", "source": ast.unparse(node)}
        described[name] = {"module": where, **entry}
    return described


def main(argv: list[str] | None = None) -> int:
    """Write the snapshot of a wheel's ``inspect_ai.util`` (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheel", type=Path, help="an inspect_ai wheel (.whl)")
    parser.add_argument("output", type=Path, help="the JSON snapshot to write")
    args = parser.parse_args(argv)

    import corral.util

    source = Source.from_wheel(args.wheel)
    exported = module_all(source, "inspect_ai.util")
    shared = set(exported) & set(corral.util.__all__)
    snapshot = {
        "inspect_ai": args.wheel.name,
        "inspect_all": exported,
        # every name, not only the shared ones: a name corral adds later is checked at once
        "signatures": describe_names(source, "inspect_ai.util", sorted(exported)),
    }
    args.output.write_text(json.dumps(snapshot, indent=2) + "\n")
    print(
        f"{len(exported)} names written to {args.output}, {len(shared)} of them in corral.util",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
