"""Tracing: the trace file of this process, and where trace files are kept.

``trace_action`` and ``trace_message`` (and the ``TRACE`` level) are
exported by :mod:`corral.util`, as ``inspect_ai.util`` exports them. They log
``TRACE`` records that follow the structured scopes; the first use of either,
on any logger, or :func:`init`, installs a handler that writes them to a JSON
Lines file in :func:`trace_dir`, gzipped when the process exits; ``corral
trace`` reads them. With ``CORRAL_OTEL=1`` and OpenTelemetry installed, every
action is also an OpenTelemetry span.

Environment: ``CORRAL_TRACE_FILE`` (the file to write), ``CORRAL_TRACE_LEVEL``
(the lowest level written, default ``TRACE``), ``CORRAL_OTEL`` (``1`` for spans).
"""

from ._install import init, trace_dir, trace_file

__all__ = ["init", "trace_dir", "trace_file"]

from .._core._public import fixup_module_metadata

fixup_module_metadata(__name__, globals())
del fixup_module_metadata
