"""``corral.util``'s signatures against the ``inspect_ai.util`` 0.3.285 snapshot.

The snapshot (``inspect_0_3_285_signatures.json``, written by
``scripts/inspect_signatures.py`` from the inspect_ai wheel's source) holds
every name both modules export. For each, corral's object is described the
same way at run time, with :func:`inspect.signature`, and the two are
compared: parameter names, order, kinds and defaults, whether a function is
``async`` or returns a context manager, a class's constructor and the public
methods inspect_ai defines on it (which of ``SandboxEnvironment``'s are
abstract included). Differences that are deliberate are listed in
:data:`ALLOWED`, each with its reason; gaps found and reported but not yet
fixed are in :data:`KNOWN_GAPS`. Anything else fails, and so does an
allowed difference or a gap that has gone away.
"""

from __future__ import annotations

import ast
import enum
import inspect
import json
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import corral.util

SNAPSHOT = Path(__file__).with_name("inspect_0_3_285_signatures.json")
_SNAPSHOT: dict[str, Any] = json.loads(SNAPSHOT.read_text())
#: The snapshot's names that corral.util exports too, and what inspect_ai has for them.
SIGNATURES: dict[str, Any] = {
    name: described
    for name, described in _SNAPSHOT["signatures"].items()
    if name in corral.util.__all__
}

#: Deliberate differences: name -> the exact difference lines :func:`differences` reports.
#: Each entry says why. Keep this short: a difference without a good reason is a bug to fix
#: (and goes in KNOWN_GAPS until it is).
ALLOWED: dict[str, tuple[str, ...]] = {
    # Users get a LimitScope from apply_limits(); like every class corral hands out from a
    # factory it has no public constructor (NoPublicConstructor). inspect's takes no arguments.
    "LimitScope": ("LimitScope(): inspect () corral (args:VAR_POSITIONAL, kwargs:VAR_KEYWORD)",),
    # The snapshot script reads dataclass fields as positional; inspect_ai declares
    # poll_timeout_recovery with field(kw_only=True), so at run time it is keyword-only and
    # comes last, as in corral (ExecRemoteAwaitableOptions(..., timeout=...) keeps its order).
    "ExecRemoteAwaitableOptions": (
        "ExecRemoteAwaitableOptions(): inspect (input:POSITIONAL_OR_KEYWORD=None, "
        "cwd:POSITIONAL_OR_KEYWORD=None, env:POSITIONAL_OR_KEYWORD=None, "
        "user:POSITIONAL_OR_KEYWORD=None, poll_interval:POSITIONAL_OR_KEYWORD=None, "
        "poll_timeout:POSITIONAL_OR_KEYWORD=None, "
        "poll_timeout_retry:POSITIONAL_OR_KEYWORD=None, concurrency:POSITIONAL_OR_KEYWORD=True,"
        " poll_timeout_recovery:POSITIONAL_OR_KEYWORD=None, timeout:POSITIONAL_OR_KEYWORD=None)"
        " corral (input:POSITIONAL_OR_KEYWORD=None, cwd:POSITIONAL_OR_KEYWORD=None, "
        "env:POSITIONAL_OR_KEYWORD=None, user:POSITIONAL_OR_KEYWORD=None, "
        "poll_interval:POSITIONAL_OR_KEYWORD=None, poll_timeout:POSITIONAL_OR_KEYWORD=None, "
        "poll_timeout_retry:POSITIONAL_OR_KEYWORD=None, concurrency:POSITIONAL_OR_KEYWORD=True,"
        " timeout:POSITIONAL_OR_KEYWORD=None, poll_timeout_recovery:KEYWORD_ONLY=None)",
    ),
    "ExecRemoteStreamingOptions": (
        "ExecRemoteStreamingOptions(): inspect (input:POSITIONAL_OR_KEYWORD=None, "
        "cwd:POSITIONAL_OR_KEYWORD=None, env:POSITIONAL_OR_KEYWORD=None, "
        "user:POSITIONAL_OR_KEYWORD=None, poll_interval:POSITIONAL_OR_KEYWORD=None, "
        "poll_timeout:POSITIONAL_OR_KEYWORD=None, "
        "poll_timeout_retry:POSITIONAL_OR_KEYWORD=None, concurrency:POSITIONAL_OR_KEYWORD=True,"
        " poll_timeout_recovery:POSITIONAL_OR_KEYWORD=None, "
        "stdin_open:POSITIONAL_OR_KEYWORD=False) corral (input:POSITIONAL_OR_KEYWORD=None, "
        "cwd:POSITIONAL_OR_KEYWORD=None, env:POSITIONAL_OR_KEYWORD=None, "
        "user:POSITIONAL_OR_KEYWORD=None, poll_interval:POSITIONAL_OR_KEYWORD=None, "
        "poll_timeout:POSITIONAL_OR_KEYWORD=None, "
        "poll_timeout_retry:POSITIONAL_OR_KEYWORD=None, concurrency:POSITIONAL_OR_KEYWORD=True,"
        " stdin_open:POSITIONAL_OR_KEYWORD=False, poll_timeout_recovery:KEYWORD_ONLY=None)",
    ),
    # inspect_ai's class is its polling client, built from a sandbox and a poll interval;
    # corral's is the abstract handle each provider implements (the exec-only slow path is
    # ExecFallbackProcess), handed out by exec_remote() and never constructed by users.
    "ExecRemoteProcess": (
        "ExecRemoteProcess(): inspect (sandbox:POSITIONAL_OR_KEYWORD, "
        "cmd:POSITIONAL_OR_KEYWORD, options:POSITIONAL_OR_KEYWORD, "
        "sandbox_default_poll_interval:POSITIONAL_OR_KEYWORD) corral ()",
        "ExecRemoteProcess.close_stdin: abstract is True, inspect has False",
        "ExecRemoteProcess.kill: abstract is True, inspect has False",
        "ExecRemoteProcess.write_stdin: abstract is True, inspect has False",
    ),
    # corral makes no model calls, so a sample has no token, cost, message or turn limit.
    "SampleLimits": (
        "SampleLimits(): inspect (token:POSITIONAL_OR_KEYWORD, cost:POSITIONAL_OR_KEYWORD, "
        "message:POSITIONAL_OR_KEYWORD, turn:POSITIONAL_OR_KEYWORD, "
        "working:POSITIONAL_OR_KEYWORD, time:POSITIONAL_OR_KEYWORD) "
        "corral (working:POSITIONAL_OR_KEYWORD, time:POSITIONAL_OR_KEYWORD)",
    ),
    # Deprecated in inspect_ai (a no-op that warns), and it takes the eval framework's TaskState.
    "LimitExceededError": ("LimitExceededError.with_state: missing in corral",),
    # A pydantic "before" validator, not something to call; corral's spec has its own
    # (private) validator doing the same job: a dict config becomes the provider's model.
    "SandboxEnvironmentSpec": ("SandboxEnvironmentSpec.load_config_model: missing in corral",),
    # No adaptive concurrency in corral (AdaptiveConcurrency is not exported); resizable= is
    # keyword-only so that a fifth positional argument meant as adaptive= is not taken for it.
    "concurrency": (
        "concurrency: inspect (name:POSITIONAL_OR_KEYWORD, concurrency:POSITIONAL_OR_KEYWORD, "
        "key:POSITIONAL_OR_KEYWORD=None, visible:POSITIONAL_OR_KEYWORD=True, "
        "adaptive:POSITIONAL_OR_KEYWORD=None, resizable:POSITIONAL_OR_KEYWORD=False) "
        "corral (name:POSITIONAL_OR_KEYWORD, concurrency:POSITIONAL_OR_KEYWORD, "
        "key:POSITIONAL_OR_KEYWORD=None, visible:POSITIONAL_OR_KEYWORD=True, "
        "resizable:KEYWORD_ONLY=False)",
    ),
    # No mutable default: None means "no options", as {} does in inspect_ai.
    "resource": (
        "resource: inspect (resource:POSITIONAL_OR_KEYWORD, type:POSITIONAL_OR_KEYWORD='auto', "
        "fs_options:POSITIONAL_OR_KEYWORD={}) corral (resource:POSITIONAL_OR_KEYWORD, "
        "type:POSITIONAL_OR_KEYWORD='auto', fs_options:POSITIONAL_OR_KEYWORD=None)",
    ),
    # An addition, keyword-only: giving a taken name to another provider needs clobber=True.
    "sandboxenv": (
        "sandboxenv: inspect (name:POSITIONAL_OR_KEYWORD) "
        "corral (name:POSITIONAL_OR_KEYWORD, clobber:KEYWORD_ONLY=False)",
    ),
    # An addition: @subtask() without a name works too (the function's name is used).
    "subtask": (
        "subtask: inspect (name:POSITIONAL_OR_KEYWORD, store:POSITIONAL_OR_KEYWORD=None, "
        "type:POSITIONAL_OR_KEYWORD=None, input:POSITIONAL_OR_KEYWORD=None) "
        "corral (name:POSITIONAL_OR_KEYWORD=None, store:POSITIONAL_OR_KEYWORD=None, "
        "type:POSITIONAL_OR_KEYWORD=None, input:POSITIONAL_OR_KEYWORD=None)",
    ),
}

#: Differences found and reported, with no reason to keep them: name -> difference lines.
#: They do not fail the signature test, so that other drift of the same name still does;
#: ``test_known_gaps_are_still_open`` fails once one is fixed, to have its entry removed.
KNOWN_GAPS: dict[str, tuple[str, ...]] = {}


def _normal(text: str | None) -> str | None:
    """Source text of a default in one spelling (``ast.unparse``), or ``None`` for "required"."""
    if text is None:
        return None
    try:
        return ast.unparse(ast.parse(text, mode="eval").body)
    except SyntaxError:
        return text


def _default_text(value: object) -> str | None:
    """A run-time default as the source text that would produce it."""
    if value is inspect.Parameter.empty:
        return None
    if isinstance(value, enum.Enum):
        return f"{type(value).__name__}.{value.name}"
    text = repr(value)
    try:
        ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return "<factory>" if text == "<factory>" else text
    return _normal(text)


def _parameters(signature: inspect.Signature, *, drop_first: bool) -> list[dict[str, Any]]:
    params = [
        {"name": p.name, "kind": p.kind.name, "default": _default_text(p.default)}
        for p in signature.parameters.values()
    ]
    return params[1:] if drop_first and params else params


def _context_manager(func: Callable[..., Any]) -> str | None:
    """``"async"`` or ``"sync"`` if *func* returns a context manager (by its return annotation)."""
    wrapped = getattr(func, "__wrapped__", None)
    if wrapped is not None and inspect.isasyncgenfunction(wrapped):
        return "async"
    if wrapped is not None and inspect.isgeneratorfunction(wrapped):
        return "sync"
    try:
        returned = typing.get_type_hints(func).get("return")
    except (NameError, TypeError):
        return None
    returned = typing.get_origin(returned) or returned
    if hasattr(returned, "__aenter__"):
        return "async"
    if hasattr(returned, "__enter__"):
        return "sync"
    return None


def _function(func: Callable[..., Any], kind: str) -> dict[str, Any]:
    return {
        "kind": kind,
        "async": inspect.iscoroutinefunction(func),
        "context_manager": _context_manager(func),
        "parameters": _parameters(
            inspect.signature(func), drop_first=kind in ("method", "classmethod")
        ),
    }


def _method(cls: type, name: str) -> dict[str, Any] | None:
    for klass in cls.__mro__:
        if name in vars(klass):
            raw = vars(klass)[name]
            break
    else:
        return None
    if isinstance(raw, property):
        return {"kind": "property"}
    if isinstance(raw, classmethod):
        described = _function(raw.__func__, "classmethod")
        func = raw.__func__
    elif isinstance(raw, staticmethod):
        described = _function(raw.__func__, "staticmethod")
        func = raw.__func__
    elif callable(raw):
        described = _function(raw, "method")
        func = raw
    else:
        return {"kind": type(raw).__name__}
    described["abstract"] = bool(getattr(func, "__isabstractmethod__", False))
    return described


def _compare_parameters(
    where: str, theirs: list[dict[str, Any]], ours: list[dict[str, Any]]
) -> list[str]:
    def line(params: list[dict[str, Any]]) -> str:
        parts = []
        for p in params:
            default = _normal(p["default"])
            # a positional-only parameter's name is not part of the call, nor its underscores
            name = p["name"].lstrip("_") if p["kind"] == "POSITIONAL_ONLY" else p["name"]
            parts.append(f"{name}:{p['kind']}" + ("" if default is None else f"={default}"))
        return ", ".join(parts)

    if line(theirs) == line(ours):
        return []
    return [f"{where}: inspect ({line(theirs)}) corral ({line(ours)})"]


def _compare_callable(where: str, theirs: dict[str, Any], ours: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for key in ("kind", "async", "context_manager", "abstract"):
        if key == "context_manager" and theirs.get(key) is None:
            continue  # the snapshot sees only decorators; a class-based manager shows as None
        if key in theirs and theirs[key] != ours.get(key):
            found.append(f"{where}: {key} is {ours.get(key)!r}, inspect has {theirs[key]!r}")
    if "parameters" in theirs and "parameters" in ours:
        found += _compare_parameters(where, theirs["parameters"], ours["parameters"])
    return found


def differences(name: str) -> list[str]:
    """How ``corral.util.<name>`` differs from the snapshot, one line per difference."""
    theirs = SIGNATURES[name]
    ours = getattr(corral.util, name)
    kind = theirs["kind"]
    if kind == "function":
        if not callable(ours) or isinstance(ours, type):
            return [f"{name}: not a function in corral"]
        return _compare_callable(name, theirs, _function(ours, "function"))
    if kind == "class":
        if not isinstance(ours, type):
            return [f"{name}: not a class in corral"]
        found: list[str] = []
        if theirs["init"] is not None:
            if issubclass(ours, BaseModel):
                ours.model_rebuild()  # a deferred model shows only **data until it is built
            ours_init = _parameters(inspect.signature(ours), drop_first=False)
            found += _compare_parameters(f"{name}()", theirs["init"], ours_init)
        for method, described in theirs["methods"].items():
            mine = _method(ours, method)
            if mine is None:
                found.append(f"{name}.{method}: missing in corral")
            else:
                found += _compare_callable(f"{name}.{method}", described, mine)
        return found
    if kind == "external":
        module, _, attr = theirs["source"].rpartition(".")
        expected = getattr(__import__(module), attr)
        return [] if ours is expected else [f"{name}: not {theirs['source']} in corral"]
    # a type alias: a Literal's values are compared, other aliases need only exist
    value = ast.parse(theirs["source"]).body[0]
    assert isinstance(value, ast.Assign | ast.AnnAssign)
    rhs = value.value
    if isinstance(rhs, ast.Subscript) and ast.unparse(rhs.value) == "Literal":
        expected_args = ast.literal_eval(ast.unparse(rhs.slice))
        got = typing.get_args(ours)
        if tuple(expected_args) != got:
            return [f"{name}: Literal{list(got)}, inspect has Literal{list(expected_args)}"]
    return []


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_signature_matches_inspect(name: str) -> None:
    """corral.util.<name> has inspect_ai 0.3.285's signature, or an allowed difference."""
    found = [line for line in differences(name) if line not in KNOWN_GAPS.get(name, ())]
    assert found == list(ALLOWED.get(name, ()))


def test_known_gaps_are_still_open() -> None:
    """Each known gap is still there: one that is fixed has its entry removed (none left now)."""
    closed = {
        name: [line for line in lines if line not in differences(name)]
        for name, lines in KNOWN_GAPS.items()
    }
    assert {name: lines for name, lines in closed.items() if lines} == {}


def test_allowed_differences_are_of_shared_names() -> None:
    """Every allow-list and known-gap entry names something in the snapshot, once."""
    assert set(ALLOWED) <= set(SIGNATURES)
    assert set(KNOWN_GAPS) <= set(SIGNATURES)
    assert not set(ALLOWED) & set(KNOWN_GAPS)


def test_snapshot_describes_every_inspect_name() -> None:
    """The snapshot has all of inspect_ai.util's __all__, so a name corral adds is checked."""
    assert set(_SNAPSHOT["signatures"]) == set(_SNAPSHOT["inspect_all"])
