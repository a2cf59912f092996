"""A griffe extension: a ``#:`` comment above an attribute is that attribute's docstring.

corral documents its module constants and type aliases the Sphinx way::

    #: The logging level of trace records, between ``DEBUG`` (10) and ``INFO`` (20).
    TRACE: Final = 13

griffe reads only string literals after an assignment, so without this the reference would
show ``TRACE`` with no text (or not at all).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import griffe


@cache
def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


class CommentDocstrings(griffe.Extension):
    """Give each attribute without a docstring the ``#:`` lines right above it."""

    def on_attribute_instance(self, *, attr: griffe.Attribute, **kwargs: Any) -> None:
        if attr.docstring is not None or attr.lineno is None:
            return
        path = attr.filepath
        if not isinstance(path, Path) or path.suffix != ".py":
            return
        lines = _lines(path)
        found: list[str] = []
        index = attr.lineno - 2  # the line above the assignment (lineno counts from 1)
        while index >= 0 and lines[index].lstrip().startswith("#:"):
            found.insert(0, lines[index].lstrip()[2:].strip())
            index -= 1
        if found:
            attr.docstring = griffe.Docstring(
                "\n".join(found), lineno=index + 2, endlineno=attr.lineno - 1, parent=attr
            )
