"""Argument checks shared by the runtime's public entry points.

Every public function checks its arguments before it changes anything, and
every message names the parameter at fault.
"""

from __future__ import annotations

import math
import os

__all__ = ["check_limit", "check_seconds", "env_seconds"]


def check_seconds(name: str, value: object, *, finite: bool = False) -> float | None:
    """Return *value* as seconds (``None`` stays ``None``), or raise naming *name*.

    Raises:
        TypeError: *value* is not a real number (``bool`` is refused).
        ValueError: *value* is negative or NaN, or infinite when *finite*.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if math.isnan(value) or value < 0:
        raise ValueError(f"{name} must be >= 0 seconds, got {value!r}")
    if finite and math.isinf(value):
        raise ValueError(f"{name} must be a finite number of seconds, got {value!r}")
    return float(value)


def check_limit(name: str, value: object) -> int:
    """Return *value* as a positive slot count, or raise naming *name*.

    Raises:
        TypeError: *value* is not an ``int`` (``bool`` is refused).
        ValueError: *value* is less than 1.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def env_seconds(variable: str, default: float) -> float:
    """Read a number of seconds from the environment variable *variable*.

    Raises:
        ValueError: the variable is set to something that is not a finite,
            non-negative number; the message names the variable.
    """
    raw = os.environ.get(variable)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{variable} must be a number of seconds, got {raw!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{variable} must be a finite number of seconds >= 0, got {raw!r}")
    return value
