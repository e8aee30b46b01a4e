"""botfactory's tracer provider: the OpenTelemetry API's behaviour, spans that processors and exporters read."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator

import pytest
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from botfactory.observability.recorder import MAX_ATTRIBUTES, MAX_EVENTS, FastSpan, FastTracerProvider
from botfactory.observability.span_process import pack_spans, unpack_spans


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[FastTracerProvider]:
    provider = FastTracerProvider(Resource({"service.name": "unit"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


@pytest.fixture
def tracer(provider: FastTracerProvider) -> trace.Tracer:
    return provider.get_tracer("botfactory.unit", "1.0")


def test_nested_spans_share_the_trace_and_the_current_span_is_restored(
    tracer: trace.Tracer, exporter: InMemorySpanExporter
) -> None:
    outside = trace.get_current_span()
    with tracer.start_as_current_span("turn", attributes={"bot": "support"}) as turn:
        assert trace.get_current_span() is turn
        with tracer.start_as_current_span("chat small", kind=SpanKind.CLIENT) as chat:
            assert trace.get_current_span() is chat
        assert trace.get_current_span() is turn
    assert trace.get_current_span() is outside

    chat_span, turn_span = exporter.get_finished_spans()
    assert chat_span.name == "chat small" and chat_span.kind is SpanKind.CLIENT
    assert chat_span.context.trace_id == turn_span.context.trace_id
    assert chat_span.parent is not None and chat_span.parent.span_id == turn_span.context.span_id
    assert turn_span.parent is None
    assert dict(turn_span.attributes or {}) == {"bot": "support"}
    assert turn_span.resource.attributes["service.name"] == "unit"
    assert turn_span.instrumentation_scope is not None
    assert (turn_span.instrumentation_scope.name, turn_span.instrumentation_scope.version) == ("botfactory.unit", "1.0")
    assert turn_span.start_time is not None and turn_span.end_time is not None
    assert turn_span.start_time <= chat_span.start_time <= chat_span.end_time <= turn_span.end_time  # type: ignore[operator]


def test_attribute_values_are_cleaned_as_opentelemetry_allows(
    tracer: trace.Tracer, exporter: InMemorySpanExporter
) -> None:
    class Custom:
        def __str__(self) -> str:
            return "custom"

    span = tracer.start_span("s", attributes={"list": ["a", "b"], "nested": {"k": [1, 2]}})
    span.set_attribute("object", Custom())  # type: ignore[arg-type]
    span.set_attribute("count", 3)
    span.set_attribute("", "dropped")
    span.set_attributes({"ratio": 0.5, "flag": True})
    span.end()

    (done,) = exporter.get_finished_spans()
    assert dict(done.attributes or {}) == {
        "list": ("a", "b"),
        "nested": {"k": (1, 2)},
        "object": "custom",
        "count": 3,
        "ratio": 0.5,
        "flag": True,
    }
    assert done.dropped_attributes == 1


def test_limits_drop_and_count_the_excess(tracer: trace.Tracer, exporter: InMemorySpanExporter) -> None:
    span = tracer.start_span("s", attributes={f"a{i}": i for i in range(MAX_ATTRIBUTES + 2)})
    span.set_attribute("a0", "replaced")  # an existing key is still updated
    span.set_attribute("new", 1)
    for i in range(MAX_EVENTS + 3):
        span.add_event(f"e{i}")
    span.end()

    (done,) = exporter.get_finished_spans()
    assert len(done.attributes or {}) == MAX_ATTRIBUTES
    assert (done.attributes or {})["a0"] == "replaced"
    assert done.dropped_attributes == 3
    assert len(done.events) == MAX_EVENTS and done.dropped_events == 3


def test_an_exception_in_a_current_span_is_recorded_and_sets_the_status(
    tracer: trace.Tracer, exporter: InMemorySpanExporter
) -> None:
    with pytest.raises(ValueError, match="bad argument"), tracer.start_as_current_span("tool"):
        raise ValueError("bad argument")

    (done,) = exporter.get_finished_spans()
    assert done.status.status_code is StatusCode.ERROR
    assert done.status.description == "ValueError: bad argument"
    (event,) = done.events
    assert event.name == "exception"
    attributes = dict(event.attributes or {})
    assert attributes["exception.type"] == "ValueError"
    assert attributes["exception.message"] == "bad argument"
    assert "raise ValueError" in str(attributes["exception.stacktrace"])
    assert attributes["exception.escaped"] == "False"


def test_options_turn_exception_recording_off(tracer: trace.Tracer, exporter: InMemorySpanExporter) -> None:
    with (
        pytest.raises(KeyError),
        tracer.start_as_current_span("quiet", record_exception=False, set_status_on_exception=False),
    ):
        raise KeyError("x")
    (done,) = exporter.get_finished_spans()
    assert done.events == () and done.status.status_code is StatusCode.UNSET


def test_cancellation_is_not_an_error_but_the_span_ends(tracer: trace.Tracer, exporter: InMemorySpanExporter) -> None:
    with pytest.raises(asyncio.CancelledError), tracer.start_as_current_span("turn"):
        raise asyncio.CancelledError

    (done,) = exporter.get_finished_spans()
    assert done.status.status_code is StatusCode.UNSET and done.events == ()
    assert done.end_time is not None


def test_a_span_used_as_a_context_manager_records_the_escaping_exception(
    tracer: trace.Tracer, exporter: InMemorySpanExporter
) -> None:
    with pytest.raises(RuntimeError), tracer.start_span("direct"):
        raise RuntimeError("boom")

    (done,) = exporter.get_finished_spans()
    assert dict(done.events[0].attributes or {})["exception.escaped"] == "True"
    assert done.status.status_code is StatusCode.ERROR


def test_status_rules_follow_the_api(tracer: trace.Tracer, exporter: InMemorySpanExporter) -> None:
    span = tracer.start_span("s")
    span.set_status(StatusCode.UNSET)
    assert span.status.status_code is StatusCode.UNSET  # type: ignore[attr-defined]
    span.set_status(StatusCode.ERROR, "failed")
    assert (span.status.status_code, span.status.description) == (StatusCode.ERROR, "failed")  # type: ignore[attr-defined]
    span.set_status(trace.Status(StatusCode.OK))
    span.set_status(StatusCode.ERROR, "too late")  # OK is final
    span.end()
    (done,) = exporter.get_finished_spans()
    assert done.status.status_code is StatusCode.OK


def test_an_ended_span_changes_no_more_and_ends_once(tracer: trace.Tracer, exporter: InMemorySpanExporter) -> None:
    span = tracer.start_span("s")
    span.end(end_time=5_000)
    assert not span.is_recording()
    span.set_attribute("late", 1)
    span.add_event("late")
    span.update_name("renamed")
    span.end(end_time=9_000)

    (done,) = exporter.get_finished_spans()
    assert (done.name, done.end_time, dict(done.attributes or {}), done.events) == ("s", 5_000, {}, ())


def test_an_unsampled_parent_means_no_span_is_recorded(tracer: trace.Tracer, exporter: InMemorySpanExporter) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    unsampled = propagate.extract({"traceparent": f"00-{trace_id}-00f067aa0ba902b7-00"})
    sampled = propagate.extract({"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})

    skipped = tracer.start_span("skipped", context=unsampled)
    skipped.end()
    kept = tracer.start_span("kept", context=sampled)
    kept.end()

    assert not skipped.is_recording()
    assert format(skipped.get_span_context().trace_id, "032x") == trace_id
    (done,) = exporter.get_finished_spans()
    assert done.name == "kept"
    assert format(done.context.trace_id, "032x") == trace_id
    assert done.parent is not None and done.parent.is_remote and done.parent.span_id == 0x00F067AA0BA902B7


def test_the_current_span_propagates_as_w3c_trace_context(tracer: trace.Tracer) -> None:
    with tracer.start_as_current_span("channel") as span:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
    context = span.get_span_context()
    assert carrier["traceparent"] == f"00-{context.trace_id:032x}-{context.span_id:016x}-01"


def test_links_and_events_keep_their_attributes(tracer: trace.Tracer, exporter: InMemorySpanExporter) -> None:
    with tracer.start_as_current_span("first") as first:
        pass
    span = tracer.start_span("second", links=[trace.Link(first.get_span_context(), {"why": "retry"})])
    span.add_link(first.get_span_context(), {"why": "again"})
    span.add_link(trace.INVALID_SPAN_CONTEXT)  # nothing to link to: ignored
    span.add_event("decision", {"allowed": True, "policies": ["p1"]}, timestamp=7)
    span.end()

    done = exporter.get_finished_spans()[-1]
    assert [dict(link.attributes or {}) for link in done.links] == [{"why": "retry"}, {"why": "again"}]
    (event,) = done.events
    assert (event.name, event.timestamp, dict(event.attributes or {})) == (
        "decision",
        7,
        {"allowed": True, "policies": ("p1",)},
    )


def test_used_as_a_decorator_each_call_gets_its_own_span(tracer: trace.Tracer, exporter: InMemorySpanExporter) -> None:
    @tracer.start_as_current_span("sync work")
    def work() -> int:
        return trace.get_current_span().get_span_context().span_id

    @tracer.start_as_current_span("async work")
    async def async_work() -> int:
        await asyncio.sleep(0)
        return trace.get_current_span().get_span_context().span_id

    first, second = work(), work()
    third = asyncio.run(async_work())

    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["sync work", "sync work", "async work"]
    assert [s.context.span_id for s in spans] == [first, second, third]
    assert len({first, second, third}) == 3


def test_a_failing_processor_never_fails_the_code_that_ended_the_span(
    provider: FastTracerProvider, exporter: InMemorySpanExporter
) -> None:
    class Broken(SpanProcessor):
        def on_end(self, span: ReadableSpan) -> None:
            raise RuntimeError("sink down")

    provider.add_span_processor(Broken())
    provider.get_tracer("t").start_span("s").end()
    assert [s.name for s in exporter.get_finished_spans()] == ["s"]


def test_a_finished_span_survives_the_span_process_pipe(tracer: trace.Tracer, exporter: InMemorySpanExporter) -> None:
    with (
        tracer.start_as_current_span("turn", attributes={"gen_ai.conversation.id": "s1"}),
        tracer.start_as_current_span("execute_tool lookup", attributes={"args": ["a"]}) as tool,
    ):
        tool.add_event("policy", {"decision": "allow"})
        tool.set_status(StatusCode.ERROR, "denied")
    spans = exporter.get_finished_spans()
    assert all(isinstance(span, FastSpan) for span in spans)

    resource, packed = pack_spans(spans)
    (tool_span, turn_span) = unpack_spans(resource, packed)

    original = spans[0]
    assert (tool_span.name, tool_span.context, tool_span.start_time, tool_span.end_time) == (
        original.name,
        original.context,
        original.start_time,
        original.end_time,
    )
    assert tool_span.parent is not None and tool_span.parent.span_id == turn_span.context.span_id
    assert dict(tool_span.attributes or {}) == {"args": ("a",)}
    assert [(e.name, dict(e.attributes or {})) for e in tool_span.events] == [("policy", {"decision": "allow"})]
    assert (tool_span.status.status_code, tool_span.status.description) == (StatusCode.ERROR, "denied")
    assert resource == {"service.name": "unit"}


@pytest.mark.parametrize(("kind", "expected"), [("botfactory", "FastTracerProvider"), ("sdk", "TracerProvider")])
def test_span_router_installs_the_configured_provider(kind: str, expected: str) -> None:
    code = (
        "from opentelemetry import trace\n"
        "from botfactory.observability import span_router\n"
        f"router = span_router('svc', {kind!r})\n"
        "provider = trace.get_tracer_provider()\n"
        "assert router.attached_to is provider\n"
        "span = trace.get_tracer('t').start_span('s')\n"
        "assert span.is_recording()\n"
        "print(type(provider).__name__, provider.resource.attributes['service.name'])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [expected, "svc"]
