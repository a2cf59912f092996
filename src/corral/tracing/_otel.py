"""OpenTelemetry spans for ``trace_action`` (the optional ``corral[otel]`` extra).

With ``opentelemetry-api`` installed and ``CORRAL_OTEL=1`` in the environment,
every :func:`~corral.tracing.trace_action` block also runs in a span named
after the action, with the attributes ``detail``, ``trace_id`` and (when there
is one) ``parent_id``, and ``event`` when it ends. The span is made current
with the OpenTelemetry context API, which lives in context variables like
corral's own parent tracking, so an action's span is the child of the span of
the action around it, in the same task or in the task that started it.

The environment and the import are looked at once, on the first traced action;
without OpenTelemetry or without ``CORRAL_OTEL=1`` the rest of the process pays
one cached check per action. The tracer comes from the global tracer
provider (a proxy until the application sets one).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Final

from .._core._version import __version__

if TYPE_CHECKING:
    from contextvars import Token

    from opentelemetry.context import Context
    from opentelemetry.trace import Tracer, TracerProvider

__all__ = ["ENV_OTEL", "ActionSpan", "resolve_tracer"]

#: Set to ``1`` to open an OpenTelemetry span for every traced action.
ENV_OTEL: Final = "CORRAL_OTEL"

#: A provider to use instead of the global one (tests set it).
_provider: TracerProvider | None = None


def resolve_tracer() -> Tracer | None:
    """The tracer for action spans, or ``None`` when spans are off or unavailable."""
    if os.environ.get(ENV_OTEL) != "1":
        return None
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    return trace.get_tracer("corral", __version__, tracer_provider=_provider)


class ActionSpan:
    """The span of one traced action, current from its start to its end."""

    __slots__ = ("_span", "_token")

    def __init__(
        self, tracer: Tracer, action: str, detail: str, trace_id: str, parent_id: str | None
    ) -> None:
        from opentelemetry import context, trace

        attributes = {"detail": detail, "trace_id": trace_id}
        if parent_id is not None:
            attributes["parent_id"] = parent_id
        self._span = tracer.start_span(action, attributes=attributes)
        self._token: Token[Context] = context.attach(trace.set_span_in_context(self._span))

    def end(self, event: str, exc: BaseException | None) -> None:
        """Leave the span's context and end it, recording how the action ended.

        An ``error`` or ``timeout`` records the exception and sets the span's
        status to ``ERROR``; a cancellation is not an error.
        """
        from opentelemetry import context
        from opentelemetry.trace import Status, StatusCode

        context.detach(self._token)
        span = self._span
        span.set_attribute("event", event)
        if exc is not None and event in ("error", "timeout"):
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        span.end()
