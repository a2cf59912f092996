"""The one loader of configuration files: TOML, YAML and JSON, chosen by suffix.

Sandbox providers read their configuration from a file named in a spec
(``("ssh", "hosts.toml")``), and ``corral sandbox check --config FILE`` checks
that a file parses before it runs anything; both read it here, so a file is
accepted or refused, with the same message, whichever way it arrives. PyYAML
is imported only for a YAML file.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import os

__all__ = ["CONFIG_SUFFIXES", "load_config_file"]

#: The suffixes :func:`load_config_file` reads (compared in lower case).
CONFIG_SUFFIXES = (".toml", ".yaml", ".yml", ".json")


def load_config_file(path: str | os.PathLike[str], *, what: str = "configuration") -> Any:
    """Parse the TOML, YAML or JSON file *path* and return its document.

    Args:
        path: The file; its suffix chooses the format.
        what: What the file holds, for messages (``"ssh sandbox configuration"``).

    Returns:
        The parsed document (a TOML file always gives a ``dict``).

    Raises:
        ValueError: The suffix is not one of :data:`CONFIG_SUFFIXES`, or the
            file does not parse; the message names the file.
        FileNotFoundError: The file does not exist (the error names it).
        OSError: The file cannot be read.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in CONFIG_SUFFIXES:
        raise ValueError(f"{what} file {str(path)!r}: expected a .toml, .yaml, .yml or .json file")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, f"{what} file not found", str(path)) from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"cannot read the {what} in {path}: not UTF-8 ({exc.reason})") from None
    if suffix in (".yaml", ".yml"):
        import yaml

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"cannot parse the {what} in {path}: {exc}") from None

    import json
    import tomllib

    try:
        return tomllib.loads(text) if suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot parse the {what} in {path}: {exc}") from None
