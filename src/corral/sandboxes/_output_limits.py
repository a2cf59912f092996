"""Output limits of sandbox operations, with environment and scoped overrides.

``exec`` keeps at most :func:`max_exec_output_size` bytes per stream (10 MiB)
and ``read_file`` refuses files over :func:`max_read_file_size` (100 MiB).
``$CORRAL_SANDBOX_MAX_EXEC_OUTPUT_SIZE`` and ``$CORRAL_SANDBOX_MAX_READ_FILE_SIZE``
set them for the process (``inspect_ai``'s ``$INSPECT_SANDBOX_MAX_EXEC_OUTPUT_SIZE``
and ``$INSPECT_SANDBOX_MAX_READ_FILE_SIZE`` too, when corral's are unset);
:func:`override_sandbox_output_limit` sets them for the code inside a ``with``
block (a context variable, so concurrent samples may differ).
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from typing import TYPE_CHECKING, Literal

from .._core._checks import env_positive_int
from .._core._env import env_variable

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "EXEC_OUTPUT_ENV",
    "INSPECT_EXEC_OUTPUT_ENV",
    "INSPECT_READ_FILE_ENV",
    "READ_FILE_ENV",
    "human_size",
    "max_exec_output_size",
    "max_read_file_size",
    "override_sandbox_output_limit",
]

EXEC_OUTPUT_ENV = "CORRAL_SANDBOX_MAX_EXEC_OUTPUT_SIZE"
READ_FILE_ENV = "CORRAL_SANDBOX_MAX_READ_FILE_SIZE"
#: inspect_ai's names for the same limits, read when corral's are unset.
INSPECT_EXEC_OUTPUT_ENV = "INSPECT_SANDBOX_MAX_EXEC_OUTPUT_SIZE"
INSPECT_READ_FILE_ENV = "INSPECT_SANDBOX_MAX_READ_FILE_SIZE"
_DEFAULT_EXEC = 10 * 1024**2
_DEFAULT_READ = 100 * 1024**2

_exec_override: ContextVar[int | None] = ContextVar("corral.sandbox.exec_limit", default=None)
_read_override: ContextVar[int | None] = ContextVar("corral.sandbox.read_limit", default=None)


def max_exec_output_size() -> int:
    """Bytes of output kept per exec stream.

    Raises:
        ValueError: ``$CORRAL_SANDBOX_MAX_EXEC_OUTPUT_SIZE`` (or, when that is
            unset, ``$INSPECT_SANDBOX_MAX_EXEC_OUTPUT_SIZE``) is not a positive
            integer; the message names the variable.
    """
    override = _exec_override.get()
    if override is not None:
        return override
    return env_positive_int(env_variable(EXEC_OUTPUT_ENV, INSPECT_EXEC_OUTPUT_ENV), _DEFAULT_EXEC)


def max_read_file_size() -> int:
    """Largest file ``read_file`` reads, in bytes.

    Raises:
        ValueError: ``$CORRAL_SANDBOX_MAX_READ_FILE_SIZE`` (or, when that is
            unset, ``$INSPECT_SANDBOX_MAX_READ_FILE_SIZE``) is not a positive
            integer; the message names the variable.
    """
    override = _read_override.get()
    if override is not None:
        return override
    return env_positive_int(env_variable(READ_FILE_ENV, INSPECT_READ_FILE_ENV), _DEFAULT_READ)


def human_size(size: int) -> str:
    """``"10 MiB"`` for exact multiples of GiB/MiB/KiB, else ``"N bytes"``."""
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} bytes"


@contextlib.contextmanager
def override_sandbox_output_limit(
    limit: int, *targets: Literal["exec", "read_file"]
) -> Iterator[None]:
    """Set the output limit of *targets* (both when none is named) inside the block.

    Raises:
        TypeError: *limit* is not an ``int``.
        ValueError: *limit* is not positive, or a target is unknown.
    """
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise TypeError(f"limit must be an int (bytes), got {type(limit).__name__}")
    if limit <= 0:
        raise ValueError(f"limit must be a positive number of bytes, got {limit}")
    for target in targets:
        if target not in ("exec", "read_file"):
            raise ValueError(f"unknown target {target!r}: expected 'exec' or 'read_file'")
    chosen = set(targets) or {"exec", "read_file"}
    tokens = []
    if "exec" in chosen:
        tokens.append((_exec_override, _exec_override.set(limit)))
    if "read_file" in chosen:
        tokens.append((_read_override, _read_override.set(limit)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)
