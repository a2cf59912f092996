"""Checks of the arguments every provider's ``exec``, ``read_file`` and ``write_file`` take.

Shared by the built-in providers so that a bad argument gets the same
exception and message whichever sandbox it was given to.
"""

from __future__ import annotations

__all__ = ["check_cmd", "check_file", "contents_bytes"]


def check_cmd(cmd: object) -> list[str]:
    """Return *cmd* once checked to be a non-empty list of ``str``.

    Raises:
        TypeError: *cmd* is not a list, or an element is not a ``str`` (named by index).
        ValueError: *cmd* is empty.
    """
    if isinstance(cmd, (str, bytes)) or not isinstance(cmd, list):
        raise TypeError(f"cmd must be a list of str, got {type(cmd).__name__}")
    if not cmd:
        raise ValueError("cmd must not be empty")
    for i, arg in enumerate(cmd):
        if not isinstance(arg, str):
            raise TypeError(f"cmd[{i}] must be a str, got {type(arg).__name__}")
    return cmd


def check_file(file: object) -> str:
    """Return *file* once checked to be a non-empty ``str``.

    Raises:
        TypeError: *file* is not a ``str``.
        ValueError: *file* is empty.
    """
    if not isinstance(file, str):
        raise TypeError(f"file must be a str, got {type(file).__name__}")
    if not file:
        raise ValueError("file must not be empty")
    return file


def contents_bytes(contents: object) -> bytes:
    """*contents* of ``write_file`` as bytes: a ``str`` as UTF-8, bytes-like as they are.

    Raises:
        TypeError: *contents* is neither ``str`` nor bytes-like.
        UnicodeEncodeError: *contents* holds lone surrogates.
    """
    if isinstance(contents, str):
        return contents.encode("utf-8")
    if isinstance(contents, (bytes, bytearray, memoryview)):
        return bytes(contents)
    raise TypeError(f"contents must be str or bytes, got {type(contents).__name__}")
