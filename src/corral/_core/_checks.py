"""Argument checks shared by every public entry point.

Every public function checks its arguments before it changes anything (takes
a slot, starts a process, sends a request), and every message names the
parameter at fault, with the index or key where there is one. These helpers
are the one place those messages are worded, so ``subprocess()``, the sandbox
proxy and the task scopes say the same thing about the same mistake.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping

__all__ = [
    "MAX_ARGUMENT",
    "check_argument",
    "check_bool",
    "check_bytes",
    "check_env",
    "check_limit",
    "check_no_nul",
    "check_optional_str",
    "check_path",
    "check_seconds",
    "check_str",
    "check_str_list",
    "env_positive_int",
    "env_seconds",
    "type_name",
]


def type_name(value: object) -> str:
    """The name of *value*'s type, for messages."""
    return type(value).__name__


def check_bool(name: str, value: object) -> bool:
    """Return *value* if it is a ``bool``, else raise :class:`TypeError` naming *name*."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type_name(value)}")
    return value


def check_str(name: str, value: object, *, empty: bool = True) -> str:
    """Return *value* if it is a ``str`` (non-empty unless *empty*), else raise naming *name*.

    Raises:
        TypeError: *value* is not a ``str``.
        ValueError: *value* is empty and *empty* is false.
    """
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type_name(value)}")
    if not empty and not value:
        raise ValueError(f"{name} must not be empty")
    return value


def check_optional_str(name: str, value: object) -> str | None:
    """Return *value* if it is a ``str`` or ``None``, else raise :class:`TypeError`."""
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} must be a str or None, got {type_name(value)}")
    return value


#: What a shell variable name is: the only env keys a sandbox takes.
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

#: Bytes one argument, or one ``KEY=value`` of the environment, may have:
#: Linux's ``MAX_ARG_STRLEN`` (32 pages of 4 KiB) less the NUL that ends it.
#: ``execve`` fails a longer one with ``E2BIG`` (and a shell's ``exec`` with
#: status 126), whatever else fits; a host of ours runs Linux, local or remote.
MAX_ARGUMENT = 32 * 4096 - 1

#: Characters of a refused value that a message quotes.
_SHOWN = 60


def _shown(value: str) -> str:
    if len(value) <= _SHOWN:
        return repr(value)
    return f"{value[:_SHOWN]!r}... ({len(value)} characters)"


def check_no_nul(name: str, value: str) -> str:
    """Return *value* unless it holds a NUL character, which no command line, path or env can carry.

    A NUL refused here, before anything is sent, cannot cut a command short on
    one side of a connection and break the connection on the other.

    Raises:
        ValueError: *value* holds ``"\\0"`` (the message names *name*).
    """
    if "\0" in value:
        raise ValueError(f"{name} must not contain a NUL character, got {_shown(value)}")
    return value


def check_argument(name: str, value: str, *, prefix: int = 0) -> str:
    """Return *value* if a program can be given it: no NUL, at most :data:`MAX_ARGUMENT` bytes.

    *prefix* counts bytes that go with it (the ``KEY=`` of an environment entry).

    Raises:
        ValueError: *value* holds a NUL, or is too long (the message names
            *name*, its size and the limit).
    """
    check_no_nul(name, value)
    if len(value) * 4 + prefix > MAX_ARGUMENT:  # cheap test first: UTF-8 is at most 4 per char
        size = len(value.encode("utf-8", "surrogateescape")) + prefix
        if size > MAX_ARGUMENT:
            raise ValueError(
                f"{name} is {size:,} bytes; one argument or environment entry may be "
                f"at most {MAX_ARGUMENT:,} bytes (Linux's MAX_ARG_STRLEN): pass large data "
                "as input or in a file"
            )
    return value


def check_path(name: str, value: object, *, optional: bool = False) -> str | None:
    """Return *value* as a path ``str`` without NUL (``None`` allowed with *optional*).

    Raises:
        TypeError: *value* is not a ``str``.
        ValueError: *value* holds a NUL character.
    """
    if value is None and optional:
        return None
    if not isinstance(value, str):
        kind = "a str or None" if optional else "a str"
        raise TypeError(f"{name} must be {kind}, got {type_name(value)}")
    return check_no_nul(name, value)


def check_str_list(name: str, value: object, *, paths: bool = False) -> list[str]:
    """Return *value* as a non-empty list of ``str``, or raise naming *name* (and the index).

    With *paths*, ``os.PathLike`` items are accepted and turned into ``str``.

    Raises:
        TypeError: *value* is not a list, or an item is not a ``str``.
        ValueError: *value* is empty, or an item holds a NUL character or
            is over :data:`MAX_ARGUMENT` bytes.
    """
    if isinstance(value, (str, bytes, bytearray)) or not isinstance(value, list | tuple):
        raise TypeError(f"{name} must be a list of str, got {type_name(value)}")
    if not value:
        raise ValueError(f"{name} must not be an empty list")
    items: list[str] = []
    for i, item in enumerate(value):
        if paths and isinstance(item, os.PathLike):
            item = os.fspath(item)
        if not isinstance(item, str):
            raise TypeError(f"{name}[{i}] must be a str, got {type_name(item)}")
        items.append(check_argument(f"{name}[{i}]", item))
    return items


def check_env(name: str, value: object, *, names: bool = False) -> dict[str, str] | None:
    """Return *value* as a ``dict`` of ``str`` to ``str`` (``None`` stays ``None``).

    Keys may not be empty or hold ``=``, and nothing may hold NUL. With
    *names*, keys must be shell variable names (letters, digits and ``_``, not
    starting with a digit), as a sandbox takes them: a key such as ``-S...``
    could otherwise be read as an option by ``env`` or ``sudo``.

    Raises:
        TypeError: *value* is not a mapping, or a key or value is not a ``str``
            (the message names the key).
        ValueError: A key or value is not allowed (the message names the key).
    """
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a mapping of str to str, got {type_name(value)}")
    checked: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise TypeError(f"{name} keys must be str, got {key!r}")
        if not isinstance(item, str):
            raise TypeError(f"{name}[{key!r}] must be a str, got {type_name(item)}")
        if names and not _VARIABLE_NAME.match(key):
            raise ValueError(
                f"{name} key {key!r} is not a shell variable name "
                "(letters, digits and _, not starting with a digit)"
            )
        if not key or "=" in key:
            raise ValueError(f"{name} key {key!r} must be non-empty and hold no '='")
        check_no_nul(f"{name} key", key)
        check_argument(f"{name}[{key!r}]", item, prefix=len(key.encode("utf-8")) + 1)
        checked[key] = item
    return checked


def check_bytes(name: str, value: object, *, optional: bool = False) -> bytes | None:
    """Return *value* as bytes: a ``str`` as UTF-8, bytes-like objects as they are.

    With *optional*, ``None`` stays ``None``.

    Raises:
        TypeError: *value* is neither ``str`` nor bytes-like (nor ``None`` when allowed).
        UnicodeEncodeError: *value* is a ``str`` holding lone surrogates.
    """
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if optional and value is None:
        return None
    allowed = "str, bytes or None" if optional else "str or bytes"
    raise TypeError(f"{name} must be {allowed}, got {type_name(value)}")


def check_seconds(name: str, value: object, *, finite: bool = False) -> float | None:
    """Return *value* as seconds (``None`` stays ``None``), or raise naming *name*.

    Raises:
        TypeError: *value* is not a real number (``bool`` is refused).
        ValueError: *value* is negative or NaN, or infinite when *finite*.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {type_name(value)}")
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
        raise TypeError(f"{name} must be an int, got {type_name(value)}")
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


def env_positive_int(variable: str, default: int, *, unit: str = "bytes") -> int:
    """Read a positive integer (of *unit*) from the environment variable *variable*.

    Raises:
        ValueError: the variable is set to something that is not a positive
            integer; the message names the variable.
    """
    raw = os.environ.get(variable)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{variable} must be an integer ({unit}), got {raw!r}.") from None
    if value <= 0:
        raise ValueError(f"{variable} must be a positive integer ({unit}), got {value}.")
    return value
