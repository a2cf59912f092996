"""Tracing: ``trace_action``/``trace_message`` records, written to a trace file per process.

:func:`trace_action` logs a ``TRACE`` record when a block of work starts and
when it ends (how it ended, and how long it took); the actions form a tree
that follows the structured scopes (``parent_id``). :func:`trace_message`
logs one record. The first use of a ``corral`` logger, or :func:`init`,
installs a handler that writes every record of the ``corral`` logger to a
JSON Lines file in :func:`trace_dir`, gzipped when the process exits;
``corral trace`` reads them. With ``CORRAL_OTEL=1`` and OpenTelemetry
installed, every action is also an OpenTelemetry span.

Environment: ``CORRAL_TRACE_FILE`` (the file to write), ``CORRAL_TRACE_LEVEL``
(the lowest level written, default ``TRACE``), ``CORRAL_OTEL`` (``1`` for spans).
"""

from ._actions import TRACE, trace_action, trace_message
from ._files import init, trace_dir, trace_file

__all__ = ["TRACE", "init", "trace_action", "trace_dir", "trace_file", "trace_message"]

from .._util import fixup_module_metadata

fixup_module_metadata(__name__, globals())
del fixup_module_metadata
