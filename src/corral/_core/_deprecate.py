"""Deprecations, all through one helper that names the version, the replacement and the issue.

A module that used to export names calls :func:`deprecated_names` for its
``__getattr__`` (PEP 562): each old name still works, with a
:class:`DeprecationWarning` saying where the name lives now.
"""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ["deprecated_names"]


def deprecated_names(
    module: str, moved: Mapping[str, str], *, version: str, issue: str
) -> Callable[[str], Any]:
    """A module ``__getattr__`` serving the names *moved* to ``"package.module:name"``.

    Args:
        module: The deprecated module's name.
        moved: Old name -> where it lives now, as ``"package.module:name"``.
        version: The corral version that deprecated them.
        issue: Where the change is explained (``"issue #10"``).
    """

    def __getattr__(name: str) -> Any:
        target = moved.get(name)
        if target is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        where, _, attribute = target.partition(":")
        warnings.warn(
            f"{module}.{name} is deprecated since corral {version}; "
            f"use {where}.{attribute} instead ({issue})",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(where), attribute)

    return __getattr__
