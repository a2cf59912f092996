"""The runtime traces its own work: subprocesses and subtasks, in a tree."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import corral
from corral.tracing import _install
from corral.util import subprocess, subtask

from .test_install import isolate, read_records

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def trace_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    yield isolate(tmp_path, monkeypatch)
    _install._reset_for_tests()


def _finishes(path: Path, action: str) -> list[dict[str, Any]]:
    return [r for r in read_records(path) if r.get("action") == action and r["event"] != "enter"]


async def test_subprocess_is_traced_with_its_command(trace_path: Path) -> None:
    await subprocess(["echo", "hello world"])
    (finish,) = _finishes(trace_path, "Subprocess")
    assert (finish["event"], finish["detail"]) == ("exit", "echo 'hello world'")


async def test_subprocess_timeout_is_traced_as_timeout(trace_path: Path) -> None:
    with pytest.raises(TimeoutError):
        await subprocess(["sleep", "30"], timeout=0.1)
    (finish,) = _finishes(trace_path, "Subprocess")
    assert finish["event"] == "timeout"


async def test_subprocesses_of_a_subtask_are_its_children(trace_path: Path) -> None:
    @subtask
    async def grade() -> None:
        await subprocess(["true"])

    async with corral.task("t") as task, task.sample(1):
        await grade()
    (sub,) = _finishes(trace_path, "Subtask")
    (proc,) = _finishes(trace_path, "Subprocess")
    assert sub["detail"] == "grade"
    assert proc["parent_id"] == sub["trace_id"]
