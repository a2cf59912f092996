"""``python -m corral``: the same as the ``corral`` command."""

from ._cli import main

main()
