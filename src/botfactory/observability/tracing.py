"""Tracing helpers: tracers per component, and W3C trace context in and out of the inbox.

A channel serves each request inside a span that continues the caller's ``traceparent``; the inbox stores the
context that is current when a message is enqueued (:func:`current_trace_context`), and the worker continues
it (:func:`context_from`), so channel, inbox wait, turn, agents, model and tool calls share one trace id even
when the turn runs in another process.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from typing import Any, Final

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Tracer
from opentelemetry.util.types import AttributeValue

__all__ = [
    "GEN_AI_CONVERSATION_ID",
    "context_from",
    "current_trace_context",
    "record_span",
    "tracer",
    "tracing_installed",
]

GEN_AI_CONVERSATION_ID: Final = "gen_ai.conversation.id"
"""The OpenTelemetry GenAI attribute holding the session id, on every span of a turn."""
_MAX_CARRIER_CHARS: Final = 1024


@functools.cache
def tracer(component: str) -> Tracer:
    """The tracer of one botfactory component (``runtime``, ``agents``, ...), from the installed provider.

    Cached, and safe to take at import time: it follows the provider installed later (the global provider is set
    at most once per process).
    """
    return _ComponentTracer(f"botfactory.{component}")


class _ComponentTracer(Tracer):
    """A tracer that asks the provider installed now for the real one, once, and then calls it directly.

    OpenTelemetry's own proxy tracer (what ``trace.get_tracer`` returns before a provider is set) does the same,
    but wraps each ``start_as_current_span`` in a generator context manager of its own: a few µs per span.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._provider: trace.TracerProvider | None = None
        self._tracer: Tracer = trace.NoOpTracer()

    def _current(self) -> Tracer:
        provider = trace.get_tracer_provider()
        if provider is not self._provider:
            self._tracer, self._provider = provider.get_tracer(self._name), provider
        return self._tracer

    def start_span(self, *args: Any, **kwargs: Any) -> Span:
        """A span from the installed provider's tracer."""
        return self._current().start_span(*args, **kwargs)

    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Iterator[Span]:  # type: ignore[override]
        """The installed provider's tracer's context manager, as it is."""
        return self._current().start_as_current_span(*args, **kwargs)  # type: ignore[return-value]


def tracing_installed() -> bool:
    """Whether a tracer provider is installed (``False``: every span is a no-op, so building one can be skipped)."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def current_trace_context() -> dict[str, str] | None:
    """The current span's context as W3C headers (``traceparent``, ``tracestate``, ``baggage``), or ``None``.

    ``None`` when no span is recording context, so untraced messages store nothing.
    """
    if not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier or None


def context_from(carrier: Mapping[str, str] | None) -> Context | None:
    """The context stored with a message, to continue its trace; ``None`` for none or a malformed one.

    Values are length-checked: the carrier came from outside (a ``traceparent`` header) and is only trusted to
    be a string.
    """
    if not carrier:
        return None
    clean = {
        str(key): value for key, value in carrier.items() if isinstance(value, str) and len(value) <= _MAX_CARRIER_CHARS
    }
    context = propagate.extract(clean)
    return context if trace.get_current_span(context).get_span_context().is_valid else None


def record_span(
    component: str,
    name: str,
    *,
    start_s: float,
    end_s: float,
    context: Context | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
) -> Span:
    """Record a span that already happened (e.g. the time a message waited in the inbox), from wall-clock seconds."""
    span = tracer(component).start_span(
        name, context=context, kind=kind, attributes=attributes, start_time=int(start_s * 1e9)
    )
    span.end(end_time=int(max(end_s, start_s) * 1e9))
    return span
