"""Observability: OpenTelemetry tracing shared by every layer (spans, W3C trace context through the inbox), and
the audit log of tool calls with the redaction that keeps secrets out of both.

Spans go to the OpenTelemetry tracer provider installed in the process (a no-op until one is configured,
e.g. by ``opentelemetry-instrument`` or a test), so botfactory adds nothing when tracing is off.
"""

from botfactory.observability.asgi import TracingMiddleware
from botfactory.observability.audit import REDACTED, AuditLog, redact, redact_text
from botfactory.observability.tracing import (
    GEN_AI_CONVERSATION_ID,
    context_from,
    current_trace_context,
    record_span,
    tracer,
)

__all__ = [
    "GEN_AI_CONVERSATION_ID",
    "REDACTED",
    "AuditLog",
    "TracingMiddleware",
    "context_from",
    "current_trace_context",
    "record_span",
    "redact",
    "redact_text",
    "tracer",
]
