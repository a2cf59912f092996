"""Per-sample state: span recording, Store.get/set, subtask calls.

1. Span recording on a 1,000-key store (each value a small dict), one key
   changed per span: corral's ``span()`` vs a plain snapshot diff done the
   way inspect_ai records store changes (``to_jsonable_python`` of the whole
   store before and after, then ``jsonpatch.make_patch`` of the two), in the
   same run. Goal: corral <= 1 ms per span.
2. ``Store.get``/``Store.set`` per operation vs a plain ``dict`` (informational).
3. ``@subtask`` call overhead vs a plain ``await`` of the same coroutine
   function (informational), under both backends.
"""

from __future__ import annotations

from typing import Any

import anyio
import jsonpatch
from pydantic_core import to_jsonable_python

import corral
from _common import BACKENDS, emit, log, median, now, paired_ratio, side_by_side
from corral.util import Store, span, store, subtask

KEYS = 1_000
SPANS = 300
OPS = 100_000
CALLS = 2_000
ROUNDS = 7


def _initial() -> dict[str, Any]:
    return {f"key{i}": {"id": i, "tags": ["a", "b"], "score": i / 3} for i in range(KEYS)}


async def _corral_spans() -> float:
    async with corral.task("bench") as task, task.sample(1, store=_initial()):
        started = now()
        for i in range(SPANS):
            async with span("step"):
                store().get(f"key{i}")["score"] = -i
        return (now() - started) / SPANS * 1e3


def _snapshot_diff_spans() -> float:
    data = _initial()
    recorded = []
    started = now()
    for i in range(SPANS):
        before = to_jsonable_python(data)
        data[f"key{i}"]["score"] = -i
        after = to_jsonable_python(data)
        recorded.append(jsonpatch.make_patch(before, after).patch)
    return (now() - started) / SPANS * 1e3


def bench_spans() -> None:
    for backend in BACKENDS:
        log(f"span recording under {backend}")
        ours, base = side_by_side(
            ROUNDS,
            lambda b=backend: anyio.run(_corral_spans, backend=b),  # type: ignore[misc]
            _snapshot_diff_spans,
        )
        emit(
            benchmark="state",
            figure="span recording, 1,000-key store, one key changed per span",
            backend=backend,
            corral=median(ours),
            baseline=median(base),
            unit="ms/span",
            goal="corral <= 1 ms/span",
            met=median(ours) <= 1.0,
            corral_samples=ours,
            baseline_samples=base,
            paired_ratio=paired_ratio(ours, base),
            baseline_is="whole-store to_jsonable_python before/after + jsonpatch.make_patch",
        )


def _store_ops() -> float:
    s = Store()
    started = now()
    for i in range(OPS):
        s.set("k", i)
        s.get("k")
    return (now() - started) / OPS * 1e9


def _dict_ops() -> float:
    d: dict[str, int] = {}
    started = now()
    for i in range(OPS):
        d["k"] = i
        d.get("k")
    return (now() - started) / OPS * 1e9


def bench_store_ops() -> None:
    log("Store.get/set")
    ours, base = side_by_side(ROUNDS, _store_ops, _dict_ops)
    emit(
        benchmark="state",
        figure="Store.set + Store.get of an int, per pair",
        corral=median(ours),
        baseline=median(base),
        unit="ns",
        goal="informational",
        met=True,
        corral_samples=ours,
        baseline_samples=base,
        baseline_is="dict item assignment + dict.get",
    )


async def _work(x: int) -> int:
    return x + 1


async def _subtask_calls() -> float:
    wrapped = subtask(_work)
    async with corral.task("bench") as task, task.sample(1):
        started = now()
        for i in range(CALLS):
            await wrapped(i)
        return (now() - started) / CALLS * 1e6


async def _plain_calls() -> float:
    started = now()
    for i in range(CALLS):
        await _work(i)
        await anyio.lowlevel.checkpoint()
    return (now() - started) / CALLS * 1e6


def bench_subtask() -> None:
    for backend in BACKENDS:
        log(f"subtask calls under {backend}")
        ours, base = side_by_side(
            ROUNDS,
            lambda b=backend: anyio.run(_subtask_calls, backend=b),  # type: ignore[misc]
            lambda b=backend: anyio.run(_plain_calls, backend=b),  # type: ignore[misc]
        )
        emit(
            benchmark="state",
            figure="@subtask call (child task, own store and transcript, span, event)",
            backend=backend,
            corral=median(ours),
            baseline=median(base),
            unit="us/call",
            goal="informational",
            met=True,
            corral_samples=ours,
            baseline_samples=base,
            baseline_is="await of the plain coroutine function plus one checkpoint",
        )


def main() -> None:
    bench_spans()
    bench_store_ops()
    bench_subtask()


if __name__ == "__main__":
    main()
