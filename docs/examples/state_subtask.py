"""Typed state with StoreModel, and subtasks that have a store and a transcript of their own."""

import anyio
from pydantic import BaseModel, Field, ValidationError

import corral
from corral.util import (
    StoreModel,
    SubtaskEvent,
    store,
    store_as,
    store_from_events_as,
    subtask,
    transcript,
)


class Step(BaseModel):  # a plain BaseModel: a StoreModel may not hold another StoreModel
    command: str
    safe: bool


class Plan(StoreModel):  # fields live in the store as "Plan:goal", "Plan:steps", ...
    goal: str = ""
    steps: list[Step] = Field(default_factory=list)
    attempts: int = 0


@subtask
async def vet(command: str) -> bool:
    assert "Plan:goal" not in store()  # a fresh, empty store: the caller's state is not here
    store().set("vetted", command)  # recorded in the subtask's own transcript
    transcript().info(f"vetting {command!r}")
    await anyio.sleep(0.01)  # the work a real check would do
    return not command.startswith("rm ")


@subtask(name="deploy", type="tool")
async def deploy(target: str) -> None:
    raise RuntimeError(f"{target} is down")


async def main() -> None:
    async with corral.task("agent") as task, task.sample("s1") as sample:
        plan = store_as(Plan)
        plan.goal = "clean the build"
        for command in ["make clean", "rm -rf /"]:
            safe = await vet(command)
            plan.steps.append(Step(command=command, safe=safe))  # in place, and it persists
        try:
            plan.attempts = "many"  # type: ignore[assignment]
        except ValidationError:
            print("refused; attempts is still", store().get("Plan:attempts"))
        try:
            await deploy("staging")
        except RuntimeError as exc:  # the subtask's own exception, not an ExceptionGroup
            print("deploy failed:", exc)
        assert store_as(Plan, instance="backup").steps == []  # keys "Plan:backup:..."
        print(sorted(store().keys()))

    for event in sample.transcript.events:
        if isinstance(event, SubtaskEvent):
            inner = [e.event for e in event.events]
            print(event.name, event.input, event.result, event.error, inner)

    rebuilt = store_from_events_as(sample.transcript.events, Plan)
    assert rebuilt.model_dump() == plan.model_dump()
    print(rebuilt.steps)


anyio.run(main, backend="asyncio")
