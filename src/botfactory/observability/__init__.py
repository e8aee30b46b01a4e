"""Observability: OpenTelemetry tracing shared by every layer (spans, W3C trace context through the inbox), and
the audit log of tool calls with the redaction that keeps secrets out of both, and alerts (rules evaluated on the
database, tool throttles, session quarantine).

Spans go to the OpenTelemetry tracer provider installed in the process; a platform attaches its sinks (the span
store, an OTLP exporter) through :func:`start_tracing`, and every span they receive is redacted first.
"""

from botfactory.observability._safety import SafetyFlag, screen_message
from botfactory.observability.alerts import (
    AlertEvaluator,
    AlertNotifier,
    Quarantine,
    ThrottleCache,
    safety_rule_for,
    throttled_message,
)
from botfactory.observability.asgi import TracingMiddleware
from botfactory.observability.audit import REDACTED, AuditLog, redact, redact_text
from botfactory.observability.export import SpanRouter, TracingExport, span_router, start_tracing
from botfactory.observability.metrics import Metrics
from botfactory.observability.redaction import (
    CONTENT_RECORDED,
    content_json,
    mask_pii,
    messages_json,
    redact_span,
)
from botfactory.observability.retention import AuditRetention, BucketRetention, SpanRetention
from botfactory.observability.span_process import SpanProcessSink, SpanTargets
from botfactory.observability.span_sink import SpanStoreSink, span_record
from botfactory.observability.tracing import (
    GEN_AI_CONVERSATION_ID,
    context_from,
    current_trace_context,
    record_span,
    tracer,
    tracing_installed,
)

__all__ = [
    "CONTENT_RECORDED",
    "GEN_AI_CONVERSATION_ID",
    "REDACTED",
    "AlertEvaluator",
    "AlertNotifier",
    "AuditLog",
    "AuditRetention",
    "BucketRetention",
    "Metrics",
    "Quarantine",
    "SafetyFlag",
    "SpanProcessSink",
    "SpanRetention",
    "SpanRouter",
    "SpanStoreSink",
    "SpanTargets",
    "ThrottleCache",
    "TracingExport",
    "TracingMiddleware",
    "content_json",
    "context_from",
    "current_trace_context",
    "mask_pii",
    "messages_json",
    "record_span",
    "redact",
    "redact_span",
    "redact_text",
    "safety_rule_for",
    "screen_message",
    "span_record",
    "span_router",
    "start_tracing",
    "throttled_message",
    "tracer",
    "tracing_installed",
]
