"""Span ids: given by the caller (``span(id=...)``) or by a provider (``span_id_provider``)."""

from __future__ import annotations

import anyio
import pytest

import corral
from corral.util import InfoEvent, SpanBeginEvent, span, span_id_provider, transcript

pytestmark = pytest.mark.anyio


def _begins(sample: corral.Sample) -> dict[str, SpanBeginEvent]:
    return {e.name: e for e in sample.transcript.events if isinstance(e, SpanBeginEvent)}


async def test_a_span_takes_the_id_it_is_given() -> None:
    async with corral.task("t") as task, task.sample(1) as sample:
        async with span("mine", id="step-7"):
            transcript().info("inside")
        async with span("other"):
            pass
    begins = _begins(sample)
    assert begins["mine"].id == "step-7"
    (info,) = [e for e in sample.transcript.events if isinstance(e, InfoEvent)]
    assert info.span_id == "step-7"
    assert begins["other"].id not in ("", "step-7")


async def test_a_provider_chooses_every_id_in_its_block_and_its_tasks() -> None:
    asked: list[tuple[str, str | None, str | None]] = []

    async def provider(name: str, parent_id: str | None, requested_id: str | None) -> str:
        asked.append((name, parent_id, requested_id))
        await anyio.lowlevel.checkpoint()
        return f"{name}-{len(asked)}"

    async def child() -> None:
        async with span("child"):
            pass

    async with corral.task("t") as task, task.sample(1) as sample:
        with span_id_provider(provider):
            async with span("outer", id="wanted"), anyio.create_task_group() as group:
                group.start_soon(child)
            with span_id_provider(None):  # off again inside
                async with span("plain"):
                    pass
        async with span("after"):
            pass
    begins = _begins(sample)
    sample_id = next(e.id for e in begins.values() if e.type == "sample")
    assert asked == [("outer", sample_id, "wanted"), ("child", "outer-1", None)]
    assert (begins["outer"].id, begins["child"].id) == ("outer-1", "child-2")
    assert begins["child"].parent_id == "outer-1"
    assert begins["plain"].id != "plain-3"
    assert len(asked) == 2  # "plain" and "after" did not ask


async def test_bad_ids_and_providers_are_refused_by_name() -> None:
    with pytest.raises(TypeError, match="id must be a non-empty str"):
        span("x", id="")
    with pytest.raises(TypeError, match="id must be a non-empty str"):
        span("x", id=3)  # type: ignore[arg-type]
    with (
        pytest.raises(TypeError, match="provider must be callable"),
        span_id_provider("nope"),  # type: ignore[arg-type]
    ):
        pass

    async def wrong(name: str, parent_id: str | None, requested_id: str | None) -> str:
        return 42  # type: ignore[return-value]

    async with corral.task("t") as task, task.sample(1):
        with span_id_provider(wrong), pytest.raises(TypeError, match="must return a non-empty str"):
            async with span("x"):
                pass
