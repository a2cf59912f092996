"""The examples the docs show are real files: they run, and the pages quote them exactly."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "docs" / "examples").glob("*.py"))
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
QUOTE = re.compile(r"<!-- example: (?P<path>\S+) -->\n```python\n(?P<body>.*?)```", re.S)


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(example: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", str(example)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_quoted_examples_match_their_files(page: Path) -> None:
    for match in QUOTE.finditer(page.read_text()):
        source = (ROOT / match["path"]).read_text()
        assert match["body"] == source, f"{page.name} quotes a stale copy of {match['path']}"
