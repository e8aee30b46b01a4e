"""Tracing helpers: tracers per component, and W3C trace context in and out of the inbox.

A channel serves each request inside a span that continues the caller's ``traceparent``; the inbox stores the
context that is current when a message is enqueued (:func:`current_trace_context`), and the worker continues
it (:func:`context_from`), so channel, inbox wait, turn, agents, model and tool calls share one trace id even
when the turn runs in another process.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Final

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

    Cached: before a provider is installed this is OpenTelemetry's proxy, which follows the provider once it is set
    (the global provider is set at most once per process).
    """
    return trace.get_tracer(f"botfactory.{component}")


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
