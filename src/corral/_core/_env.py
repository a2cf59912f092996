"""Which of two environment variables of the same meaning is in force.

Some of corral's variables have an ``inspect_ai`` counterpart that means the
same thing (``$CORRAL_DISPLAY`` and ``$INSPECT_DISPLAY``, the sandbox output
limits). Code written for inspect_ai keeps working with the variables it
sets, and corral's own win when both are set. The modules that own a
variable name both spellings; this module owns only the rule.
"""

from __future__ import annotations

import logging
import os

from ._warn_once import warn_once

__all__ = ["env_variable"]

logger = logging.getLogger("corral.settings")


def _set(variable: str) -> str | None:
    value = os.environ.get(variable)
    return value if value is not None and value.strip() else None


def env_variable(variable: str, alias: str) -> str:
    """Return the name of the variable to read: *variable*, or its *alias*.

    *variable* is corral's name and wins when it is set to anything but
    blanks; then, if *alias* is set to another value too, a warning says
    once that the alias is ignored. Otherwise the alias is returned if it
    is set, else *variable* (so that an unset pair reads as unset under
    corral's name). Reading the value, and naming the variable in an error
    about it, is the caller's job: the name returned is the one at fault.
    Not a checkpoint.
    """
    ours = _set(variable)
    theirs = _set(alias)
    if ours is not None:
        if theirs is not None and theirs.strip() != ours.strip():
            warn_once(
                logger,
                f"${alias}={theirs!r} is ignored: ${variable}={ours!r} is set too, "
                "and corral's variable wins",
            )
        return variable
    return alias if theirs is not None else variable
