"""The ``corral`` command line (a ``[project.scripts]`` entry point).

Nothing in the library imports this module, so click stays out of the
library's import path.
"""

from __future__ import annotations

import click

from ._version import __version__
from .tracing._cli import trace

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="corral")
def main() -> None:
    """corral: a structured-concurrency runtime for evaluation harnesses."""


@main.command()
@click.option(
    "--backend",
    type=click.Choice(["trio", "asyncio"]),
    default="trio",
    show_default=True,
    help="Event loop to run the showcase under.",
)
def demo(backend: str) -> None:
    """Run a short showcase of supervised subprocesses and print a summary."""
    from ._demo import run_demo

    raise SystemExit(run_demo(backend))


main.add_command(trace)
