"""Import cost: ``import corral.util`` in a fresh interpreter.

Each round starts fresh interpreters and reads the cumulative time of the
imported module from ``python -X importtime`` (so interpreter start-up is not
counted), alternating corral with its baselines:

1. ``import corral.util`` vs ``import anyio`` (the portability layer corral is
   built on). Goal: corral.util <= 150 ms cumulative on this machine.
2. ``import corral.util`` vs a module that imports anyio and defines one
   pydantic model (the floor of a pydantic-based API on anyio, informational).
3. ``import corral`` (the task scope and the facade) vs ``import corral.util``
   (informational).

Each figure also says which of the heavy dependencies (httpx, fsspec, PyYAML,
asyncssh, click, rich, jsonpatch, trio) the import pulled in: none is the goal.

corral's bytecode is compiled first, as an installer does for a wheel: in a
checkout run with ``PYTHONDONTWRITEBYTECODE`` set, every import would
otherwise compile every module again (about 35 ms here), which no installed
copy pays.
"""

from __future__ import annotations

import compileall
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import emit, log, median, paired_ratio, side_by_side

ROUNDS = 15
GOAL_MS = 150.0
HEAVY = ["httpx", "fsspec", "yaml", "asyncssh", "click", "rich", "jsonpatch", "trio"]

_FLOOR = """\
import anyio
from pydantic import BaseModel, ConfigDict


class Floor(BaseModel):
    model_config = ConfigDict(defer_build=True)
    x: int = 0
"""


def _cumulative_ms(module: str, path: str | None = None) -> float:
    """The cumulative import time of *module* in a fresh interpreter, in ms."""
    env = {**os.environ}
    if path is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (path, env.get("PYTHONPATH")) if p)
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    pattern = re.compile(rf"^import time:\s+\d+ \|\s+(\d+) \| {re.escape(module)}$", re.M)
    found = pattern.findall(done.stderr)
    if not found:
        raise RuntimeError(f"no import time for {module}:\n{done.stderr[-2000:]}")
    return int(found[-1]) / 1000


def _heavy_imported(module: str) -> list[str]:
    code = (
        f"import sys, json, {module}; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    imported: list[str] = json.loads(done.stdout)
    return imported


def _compile_corral() -> None:
    """Compile corral's bytecode into ``__pycache__``, as installing a wheel does."""
    spec = importlib.util.find_spec("corral")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("corral is not importable")
    for location in spec.submodule_search_locations:
        if not compileall.compile_dir(location, quiet=1):
            raise RuntimeError(f"could not compile {location}")
        log(f"bytecode compiled: {location}")


def main() -> None:
    _compile_corral()
    with tempfile.TemporaryDirectory(prefix="corral-bench-import-") as directory:
        Path(directory, "import_floor.py").write_text(_FLOOR)
        heavy = _heavy_imported("corral.util")
        log(f"heavy modules imported by corral.util: {heavy or 'none'}")

        util, anyio_only = side_by_side(
            ROUNDS,
            lambda: _cumulative_ms("corral.util"),
            lambda: _cumulative_ms("anyio"),
            label="corral.util vs anyio",
        )
        emit(
            benchmark="import",
            figure="import corral.util, cumulative (-X importtime)",
            corral=median(util),
            baseline=median(anyio_only),
            unit="ms",
            ratio=paired_ratio(util, anyio_only),
            goal=f"corral.util <= {GOAL_MS:g} ms, none of {', '.join(HEAVY)} imported",
            met=median(util) <= GOAL_MS and not heavy,
            corral_samples=util,
            baseline_samples=anyio_only,
            baseline_is="import anyio",
            corral_best=min(util),
            heavy_imported=heavy,
        )

        util, floor = side_by_side(
            ROUNDS,
            lambda: _cumulative_ms("corral.util"),
            lambda: _cumulative_ms("import_floor", directory),
            label="corral.util vs anyio + one pydantic model",
        )
        emit(
            benchmark="import",
            figure="import corral.util vs the floor of a pydantic API on anyio",
            corral=median(util),
            baseline=median(floor),
            unit="ms",
            ratio=paired_ratio(util, floor),
            goal="informational",
            met=True,
            corral_samples=util,
            baseline_samples=floor,
            baseline_is="import anyio + from pydantic import BaseModel + one deferred model",
        )

        top, util = side_by_side(
            ROUNDS,
            lambda: _cumulative_ms("corral"),
            lambda: _cumulative_ms("corral.util"),
            label="corral vs corral.util",
        )
        emit(
            benchmark="import",
            figure="import corral (task scope and facade) vs import corral.util",
            corral=median(top),
            baseline=median(util),
            unit="ms",
            ratio=paired_ratio(top, util),
            goal="informational",
            met=True,
            corral_samples=top,
            baseline_samples=util,
            baseline_is="import corral.util",
            heavy_imported=_heavy_imported("corral"),
        )


if __name__ == "__main__":
    main()
