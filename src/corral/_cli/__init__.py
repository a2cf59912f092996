"""The ``corral`` command line (a ``[project.scripts]`` entry point).

Nothing in the library imports this package (an import-linter contract
checks it), so click and rich stay out of the library's import path. The
commands: ``demo`` (:mod:`._demo`, its display in :mod:`._demo_display`),
``sandbox`` (:mod:`._sandbox`) and ``trace`` (:mod:`._trace`). Every error is
one line on stderr, with exit status 2 for a usage error and 1 for a failure
(:mod:`._errors`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .._core._version import __version__
from ._errors import OneLineErrors, one_line
from ._sandbox import sandbox
from ._trace import trace

__all__ = ["main"]


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="corral")
def main() -> None:
    """corral: a structured-concurrency runtime for evaluation harnesses."""


def _sandbox_spec(ctx: click.Context, param: click.Parameter, value: str) -> object:
    from ._demo import parse_sandbox_spec

    try:
        return parse_sandbox_spec(value)
    except (TypeError, ValueError, ImportError) as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


@main.command()
@click.option(
    "--backend",
    type=click.Choice(["trio", "asyncio"]),
    default="trio",
    show_default=True,
    help="Event loop to run the demo under.",
)
@click.option(
    "--samples",
    type=click.IntRange(min=1),
    default=40,
    show_default=True,
    help="How many samples the task runs.",
)
@click.option(
    "--sandbox",
    "sandbox",
    default="local",
    show_default=True,
    metavar="SPEC",
    callback=_sandbox_spec,
    help="The samples' sandbox: TYPE or TYPE:CONFIG.",
)
@click.option(
    "--max-sandboxes",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="How many samples may hold a sandbox at once.",
)
@click.option(
    "--logs",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("logs"),
    show_default=True,
    help="Directory for the sample logs (a demo-<time>/ directory is created in it).",
)
@click.option(
    "--display",
    type=click.Choice(["full", "rich", "conversation", "plain", "log", "none"]),
    default=None,
    help=(
        "How progress is shown: full, rich and conversation draw a live view, plain and "
        "log print one line per finished sample, none nothing.  [default: $CORRAL_DISPLAY, "
        "else full]"
    ),
)
def demo(
    backend: str,
    samples: int,
    sandbox: Any,
    max_sandboxes: int,
    logs: Path,
    display: str | None,
) -> None:
    """Run a task of sandboxed samples with a live display, then print a summary.

    Exits with 0 when every sample behaved as designed (one command times out
    and one sample hits its time limit on purpose) and no process or sandbox
    was left behind; 1 otherwise, or when the demo cannot start (a log
    directory that cannot be made, a sandbox that cannot be set up); 2 for a
    bad option. Ctrl-C stops the samples, prints the summary of those that
    finished and exits with 130.
    """
    from ._demo import INTERRUPTED_STATUS, DemoConfig, DemoSetupError, run_demo

    config = DemoConfig(backend, samples, sandbox, max_sandboxes, logs, display)
    try:
        status = run_demo(config)
    except DemoSetupError as exc:
        raise click.ClickException(one_line(str(exc))) from None
    except KeyboardInterrupt:  # before the samples started, or once they were summed up
        click.echo("interrupted", err=True)
        status = INTERRUPTED_STATUS
    raise SystemExit(status)


main.add_command(trace)
main.add_command(sandbox)
