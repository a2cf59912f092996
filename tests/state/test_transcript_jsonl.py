"""Transcripts as JSON Lines: written one event at a time, read back one line at a time."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

import corral
from corral.sandboxes._memory import MemorySandboxEnvironment
from corral.sandboxes._registry import register_sandbox
from corral.util import Transcript, sandbox, span, transcript

pytestmark = pytest.mark.anyio


async def test_a_sample_transcript_round_trips_through_json_lines(tmp_path: Path) -> None:
    register_sandbox("memory-jsonl", MemorySandboxEnvironment, clobber=True)
    async with corral.task("t", sandbox="memory-jsonl") as task, task.sample(1):
        async with span("step"):
            for n in range(5):
                await sandbox().exec(["printf", f"out {n}"])
        transcript().info({"done": True})
        recorded = transcript()
        path = tmp_path / "events.jsonl"
        count = recorded.write_jsonl(path)
        events = list(recorded.events)
    assert count == len(events)
    lines = path.read_bytes().splitlines()
    assert len(lines) == count
    read = list(Transcript.iter_jsonl(path))
    assert read == events
    assert [e.event for e in read].count("sandbox") == 5
    assert Transcript.read_jsonl(path).to_json() == Transcript(events).to_json()


async def test_writing_json_lines_leaves_lazy_events_unbuilt(tmp_path: Path) -> None:
    """Writing builds each hot-path event for its line only (memory stays flat)."""
    register_sandbox("memory-jsonl", MemorySandboxEnvironment, clobber=True)
    async with corral.task("t", sandbox="memory-jsonl") as task, task.sample(1):
        await sandbox().exec(["printf", "x"])
        recorded = transcript()
        recorded.write_jsonl(tmp_path / "events.jsonl")
        assert recorded._unbuilt
        assert any(not hasattr(e, "event") for e in recorded._events)


def test_a_bad_line_fails_validation(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"event": "info", "data": 1}\n\n{"event": "nope"}\n')
    events = Transcript.iter_jsonl(path)
    assert next(events).event == "info"
    with pytest.raises(ValidationError):
        next(events)
