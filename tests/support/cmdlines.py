"""Looking for a secret in every command line on the machine."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["command_lines_holding", "secret_value", "shared_directory"]


def secret_value() -> tuple[str, str]:
    """A value hard to carry through a shell, and the random token in it to look for.

    It starts with ``-`` and holds newlines, both quotes, ``$``, a backquote,
    backslashes, a line that is only a quote, and non-ASCII text.
    """
    token = f"corral-secret-{secrets.token_hex(8)}"
    value = f"-{token}\n'\n\"it's\" $HOME `id` \\n\\\\ $(id) é\n\n"
    return value, token


def command_lines_holding(token: str) -> dict[int, bytes]:
    """Every process (but this one) whose ``/proc/PID/cmdline`` holds *token*, with it."""
    needle = token.encode()
    me = os.getpid()
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                line = f.read()
        except OSError:  # gone, or not ours to read
            continue
        if needle in line:
            found[int(entry)] = line
    return found


@contextmanager
def shared_directory() -> Iterator[Path]:
    """A directory other users can reach (pytest's tmp_path is root's only)."""
    directory = Path(tempfile.mkdtemp(prefix="corral-secrets-"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)
