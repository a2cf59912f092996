"""Per-sample state: a store, spans that record its changes, and a log saved and read back."""

import tempfile
from pathlib import Path

import anyio

import corral
from corral.util import (
    SampleLog,
    SpanBeginEvent,
    Store,
    StoreEvent,
    span,
    store,
    store_from_events,
    transcript,
)


async def grade(answer: str) -> None:
    async with span("grade", type="scorer"):
        scores: list[int] = store().get("scores", [])  # stores the default list itself
        scores.append(len(answer))  # an in-place change, seen when the span ends
        store().set("answer", {"text": answer, "final": False})


async def run_sample(task: corral.Task, n: int, done: dict[int, tuple[Store, SampleLog]]) -> None:
    async with task.sample(n, metadata={"n": n}, store={"attempts": 0}) as sample:
        store().set("attempts", 1)  # this sample's store: the other sample never sees it
        await grade("because" * n)
        async with span("review"):
            store().get("answer")["final"] = True  # recorded as a change at /answer/final
        try:
            async with span("retry"):
                store().set("attempts", 2)  # recorded although the span fails
                raise ValueError("model timed out")
        except ValueError as exc:
            transcript().info({"retry": str(exc)})
    done[n] = (sample.store, sample.log())


async def main() -> None:
    done: dict[int, tuple[Store, SampleLog]] = {}
    async with corral.task("eval") as task:
        for n in (1, 2):
            task.start_soon(run_sample, task, n, done)

    live, log = done[1]
    for event in log.events:
        if isinstance(event, SpanBeginEvent):
            print(f"{event.event:10} {event.name}")
        elif isinstance(event, StoreEvent):
            print(event.event)
            for change in event.changes:
                print("   ", change.model_dump(exclude_none=True))
        else:
            print(event.event)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sample-1.json"
        log.write_json(path)
        back = SampleLog.read_json(path)
    assert back == log
    print("stored:", back.store)
    assert store_from_events(back.events) == live  # rebuilt from the saved events alone


anyio.run(main, backend="trio")
