"""The span router: every registered sink gets each finished span once, redacted; and spans become store rows."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from botfactory.config import TracingSettings
from botfactory.observability import SpanRouter, span_record
from botfactory.observability.export import otlp_processor

TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
CONTEXT = SpanContext(trace_id=TRACE_ID, span_id=0xB7AD6B7169203331, is_remote=False, trace_flags=TraceFlags(1))
PARENT = SpanContext(trace_id=TRACE_ID, span_id=0x00F067AA0BA902B7, is_remote=False, trace_flags=TraceFlags(1))


class Collecting(SpanProcessor):
    def __init__(self) -> None:
        self.ended: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.ended.append(span)


class Broken(SpanProcessor):
    def on_end(self, span: ReadableSpan) -> None:
        raise RuntimeError("sink bug")


def _span() -> ReadableSpan:
    return ReadableSpan(
        name="execute_tool github",
        context=CONTEXT,
        parent=PARENT,
        kind=SpanKind.CLIENT,
        attributes={
            "gen_ai.conversation.id": "T1:C9:1700000400.000100",
            "botfactory.turn.id": "turn-1",
            "botfactory.bot": "support",
            "gen_ai.tool.call.arguments": '{"usernames": ["octocat"]}',
            "botfactory.user": "grace@example.com",
            "botfactory.policy.reasons": ("policy0",),
            "botfactory.tool.ok": True,
        },
        events=[Event("retry", {"attempt": 2}, 1_700_000_000_500_000_000)],
        status=Status(StatusCode.ERROR, "boom"),
        start_time=1_700_000_000_000_000_000,
        end_time=1_700_000_001_250_000_000,
    )


def test_each_registered_sink_gets_the_redacted_span_and_a_broken_one_does_not_stop_the_others() -> None:
    router = SpanRouter()
    first, second = Collecting(), Collecting()
    router.add(first)
    router.add(Broken())
    router.add(second)
    router.on_end(_span())
    assert len(first.ended) == 1 and len(second.ended) == 1
    attributes = first.ended[0].attributes or {}
    assert "gen_ai.tool.call.arguments" not in attributes  # the bot did not opt in to content
    assert attributes["botfactory.user"] == "***"

    router.remove(first)
    router.on_end(_span())
    assert len(first.ended) == 1 and len(second.ended) == 2


def test_a_finished_span_becomes_a_store_row_with_hex_ids_and_lowercase_kind_and_status() -> None:
    record = span_record(_span())
    assert record is not None
    assert record.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert (record.span_id, record.parent_span_id) == ("b7ad6b7169203331", "00f067aa0ba902b7")
    assert (record.kind, record.status, record.status_message) == ("client", "error", "boom")
    assert (record.session_id, record.turn_id, record.bot) == ("T1:C9:1700000400.000100", "turn-1", "support")
    assert record.duration_ms == pytest.approx(1250.0, abs=0.01)
    assert record.attributes["botfactory.policy.reasons"] == ["policy0"]  # tuples become JSON lists
    assert record.events == [{"name": "retry", "time": 1_700_000_000.5, "attributes": {"attempt": 2}}]


def test_the_otlp_exporter_posts_to_the_traces_path_of_the_configured_endpoint() -> None:
    assert otlp_processor(TracingSettings()) is None
    processor = otlp_processor(TracingSettings(otlp_endpoint="http://127.0.0.1:4318/", otlp_headers={"x-key": "k"}))
    assert processor is not None
    try:
        exporter = processor._batch_processor._exporter  # type: ignore[attr-defined]
        assert exporter._inner._endpoint == "http://127.0.0.1:4318/v1/traces"
        # The router hands it spans as recorded; it redacts each batch on its own thread before encoding.
        assert getattr(processor, "redacts", False) is True
        exported: list[ReadableSpan] = []

        class Keep(SpanExporter):
            def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
                exported.extend(spans)
                return SpanExportResult.SUCCESS

        exporter._inner = Keep()
        assert exporter.export([_span()]) == SpanExportResult.SUCCESS
        attributes = exported[0].attributes or {}
        assert "gen_ai.tool.call.arguments" not in attributes
        assert attributes["botfactory.user"] == "***"
    finally:
        processor.shutdown()


def test_sinks_that_redact_themselves_get_the_span_as_recorded_and_the_others_a_redacted_copy() -> None:
    class SelfRedacting(Collecting):
        redacts = True

    router = SpanRouter()
    raw, other = SelfRedacting(), Collecting()
    router.add(raw)
    router.add(other)
    router.on_end(_span())
    assert (raw.ended[0].attributes or {})["botfactory.user"] == "grace@example.com"  # redacted by the sink itself
    assert (other.ended[0].attributes or {})["botfactory.user"] == "***"
