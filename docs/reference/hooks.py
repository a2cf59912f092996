"""A mkdocs hook: the docstrings' reST roles (``:class:`Store```) become links or code.

The docstrings are Google style, with Sphinx-style roles for cross-references. mkdocstrings
renders a role as text followed by code (``:class:<code>Store</code>``); this hook turns it
into an optional cross-reference that mkdocs-autorefs resolves to the name's reference entry,
or leaves as plain code when there is none (a private name, or one outside corral).
"""

from __future__ import annotations

import html
import importlib
import re
from typing import Any

PUBLIC_MODULES = [
    "corral",
    "corral.util",
    "corral.sandboxes",
    "corral.sandboxes.testing",
    "corral.tracing",
]
ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):<code>(?P<target>[^<]*)</code>")

_homes: dict[str, str] = {}


def on_config(config: Any) -> Any:
    """Map each public name to its one public home (``Store`` -> ``corral.util.Store``)."""
    for name in PUBLIC_MODULES:
        module = importlib.import_module(name)
        _homes[name] = name
        for member in module.__all__:
            _homes.setdefault(member, f"{name}.{member}")
    return config


def _link(match: re.Match[str]) -> str:
    target = html.unescape(match["target"])
    shown = target.rsplit(".", 1)[-1] if target.startswith("~") else target
    target = target.lstrip("~").removesuffix("()")
    head, _, rest = target.partition(".")
    if target in _homes:
        identifier = _homes[target]
    elif head in _homes and not target.startswith("corral"):
        identifier = f"{_homes[head]}.{rest}"
    else:
        identifier = target
    code = f"<code>{html.escape(shown)}</code>"
    return f'<autoref identifier="{html.escape(identifier)}" optional>{code}</autoref>'


def on_page_content(content: str, **kwargs: Any) -> str:
    """Replace every role in a page's HTML, and drop reST's ``::`` before a code block."""
    return ROLE.sub(_link, content).replace("::</p>", ":</p>")
