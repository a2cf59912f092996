"""``docs/migrating.md`` names every name of ``inspect_ai.util.__all__`` (0.3.285)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import corral.util

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "migrating.md"
SNAPSHOT = Path(__file__).with_name("inspect_0_3_285_signatures.json")
INSPECT_ALL: list[str] = json.loads(SNAPSHOT.read_text())["inspect_all"]


def _section(title: str) -> set[str]:
    """The backticked names of the section *title* of the page."""
    text = PAGE.read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return set(re.findall(r"`(\w+)`", text[start : end if end != -1 else None]))


def _first_column(title: str) -> set[str]:
    """The backticked names in the first column of the table of section *title*."""
    text = PAGE.read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    rows = [line for line in text[start:end].splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`(\w+)`", row.split("|")[1])}


def test_every_inspect_name_is_on_the_page() -> None:
    """Each inspect_ai.util name is in one of the three groups."""
    groups = [
        _section("Here and the same"),
        _section("Here, with a documented difference"),
        _section("Not here"),
    ]
    missing = [name for name in INSPECT_ALL if not any(name in group for group in groups)]
    assert missing == []


def test_names_are_in_the_right_group() -> None:
    """A name listed as here is in corral.util, and a name listed as not here is not."""
    exported = set(corral.util.__all__)
    listed_here = (
        _section("Here and the same") | _section("Here, with a documented difference")
    ) & set(INSPECT_ALL)
    absent = {name for name in INSPECT_ALL if name not in exported}
    assert sorted(listed_here - exported) == []
    table = _first_column("Not here")
    assert sorted(table - absent) == []
    assert sorted(absent - table) == []
