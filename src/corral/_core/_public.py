"""Small helpers shared by the public packages.

Nothing here is public. Two jobs:

* :class:`NoPublicConstructor` makes classes that users only ever get from a
  factory function (``corral.task(...)``) impossible to construct by hand, so
  that the factory stays the one place where arguments are checked.
* :func:`fixup_module_metadata` rewrites ``__module__`` and ``__qualname__`` of
  re-exported objects so that reprs and tracebacks show ``corral.util.X``
  rather than ``corral._process._concurrency.X``.
"""

from __future__ import annotations

from typing import Any, NoReturn, TypeVar

__all__ = ["NoPublicConstructor", "fixup_module_metadata"]

T = TypeVar("T")


class NoPublicConstructor(type):
    """Metaclass that forbids ``Class(...)`` and offers ``Class._create(...)``.

    The private ``_create`` classmethod is what factories call.
    """

    def __call__(cls, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError(
            f"{cls.__module__}.{cls.__qualname__} has no public constructor; "
            "use the factory function that returns it"
        )

    def _create(cls: type[T], *args: Any, **kwargs: Any) -> T:
        return super().__call__(*args, **kwargs)  # type: ignore[misc, no-any-return]


def fixup_module_metadata(
    module_name: str, namespace: dict[str, Any], *, facade: bool = False
) -> None:
    """Point ``__module__`` of every public object in *namespace* at *module_name*.

    Only objects defined inside the ``corral`` package are touched. A package
    claims objects that still name a private module; a *facade* (``corral.util``)
    claims every corral object it re-exports, so users see ``corral.util.X``
    for the names they import from there.
    """
    seen: set[int] = set()

    def fix_one(qualname: str, name: str, obj: object) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        mod = getattr(obj, "__module__", None)
        if not isinstance(mod, str) or not mod.startswith("corral."):
            return
        if not facade and "._" not in mod:
            return
        setattr(obj, "__module__", module_name)  # noqa: B010
        if isinstance(obj, type):
            obj.__qualname__ = qualname
            for attr_name, attr_value in obj.__dict__.items():
                fix_one(f"{qualname}.{attr_name}", attr_name, attr_value)
        elif callable(obj) and hasattr(obj, "__qualname__"):
            setattr(obj, "__name__", name)  # noqa: B010
            setattr(obj, "__qualname__", qualname)  # noqa: B010

    for objname in namespace.get("__all__", ()):
        fix_one(objname, objname, namespace[objname])
