"""The examples the docs show are real files: they run, and the pages quote them exactly."""

from __future__ import annotations

import importlib
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


#: The public modules and their reference pages (docs/reference/<page>.md).
REFERENCE = {
    "corral": "corral",
    "corral.util": "util",
    "corral.sandboxes": "sandboxes",
    "corral.sandboxes.testing": "sandboxes-testing",
    "corral.tracing": "tracing",
    "corral.runtime": "runtime",
}
#: Names in an ``__all__`` that the reference explains in its text instead of an entry.
NOT_RENDERED = {"corral.__version__", "corral.util.StrEnum"}  # a str; the stdlib's enum


def test_every_public_module_has_a_reference_page() -> None:
    pages = {p.stem for p in (ROOT / "docs" / "reference").glob("*.md")} - {"index"}
    assert pages == set(REFERENCE.values())
    for module, page in REFERENCE.items():
        text = (ROOT / "docs" / "reference" / f"{page}.md").read_text()
        assert f"::: {module}\n" in text, f"docs/reference/{page}.md does not render {module}"


def test_the_site_builds_strictly_with_every_public_name(tmp_path: Path) -> None:
    """``mkdocs build --strict``: a broken link, anchor or cross-reference, a docstring
    griffe cannot parse, or a page left out of the nav fails the build."""
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    missing = []
    for module, page in REFERENCE.items():
        built = (tmp_path / "reference" / page / "index.html").read_text()
        names = importlib.import_module(module).__all__
        missing += [
            f"{module}.{name}"
            for name in names
            if f'id="{module}.{name}"' not in built and f"{module}.{name}" not in NOT_RENDERED
        ]
    assert not missing, f"public names without a reference entry: {missing}"
