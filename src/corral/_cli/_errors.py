"""One line per error: the click group class of the ``corral`` commands.

click prints a usage error as the command's usage, a hint and the error,
three lines or more. :class:`OneLineErrors` prints every error as one line on
stderr, ``Error: <what is wrong>``, a usage error followed by where to read the
command's help, and exits with click's statuses: 2 for a usage error (a bad
or missing option or argument), 1 for a failure (``click.ClickException``),
1 after ``Aborted!``.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, NoReturn

import click

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["OneLineErrors", "one_line"]


def one_line(text: str) -> str:
    """*text* with its lines joined by ``"; "`` and runs of spaces made one."""
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return "; ".join(line for line in lines if line)


class OneLineErrors(click.Group):
    """A ``click.Group`` whose errors are one line each (see the module's docstring)."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command; in standalone mode, report errors in one line and exit."""
        extra["windows_expand_args"] = windows_expand_args
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            status = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            _fail(f"Error: {one_line(exc.format_message())}{hint}", exc.exit_code)
        except click.ClickException as exc:
            _fail(f"Error: {one_line(exc.format_message())}", exc.exit_code)
        except click.Abort:
            _fail("Aborted!", 1)
        sys.exit(status if isinstance(status, int) else 0)


def _fail(line: str, status: int) -> NoReturn:
    click.echo(line, err=True)
    sys.exit(status)
