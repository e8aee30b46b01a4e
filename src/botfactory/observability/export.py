"""Where spans go: one process-wide router on the tracer provider, and each platform's sinks behind it.

OpenTelemetry allows one global tracer provider per process. :func:`span_router` makes sure there is one that
takes span processors (installing botfactory's :class:`~botfactory.observability.recorder.FastTracerProvider`, or
the SDK's with ``[tracing] provider = "sdk"``, with ``service.name`` from ``[tracing]`` when none is; adding to the
SDK provider a test or ``opentelemetry-instrument`` installed) and attaches a single :class:`SpanRouter` to it,
once. Each platform then
registers its sinks on the router when it starts and removes them when it stops (:func:`start_tracing`), so
several platforms in one process (tests) each get their own OTLP exporter and span store:

- an OTLP/HTTP exporter (``{tracing.otlp_endpoint}/v1/traces``, batched on the SDK's background thread) when an
  endpoint is configured;
- the span store (:class:`~botfactory.observability.span_sink.SpanStoreSink`) when ``tracing.store_spans``.

Every span passes :func:`~botfactory.observability.redaction.redact_span` before it is stored or exported: the two
sinks above redact on their own threads (the span store's conversion thread, the batch processor's thread), so the
event loop that ends a span only hands it over; any other sink gets a copy the router redacted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from sqlalchemy.ext.asyncio import AsyncEngine

from botfactory.config import TracingSettings
from botfactory.observability.recorder import FastTracerProvider
from botfactory.observability.redaction import redact_span
from botfactory.observability.retention import SpanRetention
from botfactory.observability.span_process import SpanProcessSink, SpanTargets
from botfactory.observability.span_sink import SpanStoreSink
from botfactory.store import SpanStore

__all__ = [
    "SpanRouter",
    "TracingExport",
    "otlp_exporter",
    "otlp_processor",
    "otlp_traces_url",
    "span_router",
    "start_tracing",
]

logger = logging.getLogger(__name__)

_LOCK = threading.Lock()
_ROUTER: SpanRouter | None = None


class SpanRouter(SpanProcessor):
    """Hands every finished span to the sinks registered now, to be redacted (none: the span is dropped at once)."""

    def __init__(self, redact: Callable[[ReadableSpan], ReadableSpan] = redact_span) -> None:
        self._redact = redact
        self._sinks: tuple[SpanProcessor, ...] = ()  # replaced, never mutated: on_end reads it without a lock
        self._lock = threading.Lock()
        self.attached_to: TracerProvider | FastTracerProvider | None = None

    @property
    def sinks(self) -> tuple[SpanProcessor, ...]:
        """The sinks registered now."""
        return self._sinks

    def add(self, sink: SpanProcessor) -> None:
        """Send spans to ``sink`` from now on."""
        with self._lock:
            self._sinks = (*self._sinks, sink)

    def remove(self, sink: SpanProcessor) -> None:
        """Stop sending spans to ``sink`` (it is not shut down here)."""
        with self._lock:
            self._sinks = tuple(s for s in self._sinks if s is not sink)

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Sinks only look at finished spans."""

    def on_end(self, span: ReadableSpan) -> None:
        """Pass the span to each sink, redacted; a failing sink never fails the code that ended it.

        Sinks marked ``redacts`` (the span store, the OTLP exporter) get it as recorded and redact it on their own
        thread, off the event loop; any other sink gets a copy redacted here, once.
        """
        sinks = self._sinks
        clean: ReadableSpan | None = None
        for sink in sinks:
            try:
                if getattr(sink, "redacts", False):
                    sink.on_end(span)
                    continue
                if clean is None:
                    clean = self._redact(span)
                sink.on_end(clean)
            except Exception:  # a span that could not be redacted is not exported
                logger.warning("sink=<%s> | span sink failed", type(sink).__name__, exc_info=True)

    def shutdown(self) -> None:
        """Sinks are shut down by the platform that registered them."""

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Flush every sink."""
        return all(sink.force_flush(timeout_millis) for sink in self._sinks)


def span_router(service_name: str = "botfactory", provider_kind: str = "botfactory") -> SpanRouter:
    """The process's span router, attached to the global tracer provider (installed here if there is none).

    Args:
        service_name: ``service.name`` of the provider installed here.
        provider_kind: Which provider to install when none is: ``botfactory`` (a
            :class:`~botfactory.observability.recorder.FastTracerProvider`) or ``sdk`` (the OpenTelemetry SDK's).

    A provider that is neither (a vendor's own) cannot take processors: botfactory's sinks then receive nothing,
    which is logged.
    """
    global _ROUTER
    with _LOCK:
        router = _ROUTER if _ROUTER is not None else SpanRouter()
        _ROUTER = router
        provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider | FastTracerProvider):
            resource = Resource.create({SERVICE_NAME: service_name})
            installed = (
                FastTracerProvider(resource) if provider_kind == "botfactory" else TracerProvider(resource=resource)
            )
            trace.set_tracer_provider(installed)  # a no-op (logged by OpenTelemetry) if another thread won the race
            provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider | FastTracerProvider):
            logger.warning(
                "provider=<%s> | the installed tracer provider is neither botfactory's nor the OpenTelemetry SDK's; "
                "botfactory's span store and OTLP export stay empty",
                type(provider).__name__,
            )
        elif router.attached_to is not provider:
            provider.add_span_processor(router)
            router.attached_to = provider
        return router


def otlp_processor(settings: TracingSettings) -> BatchSpanProcessor | None:
    """A batching OTLP/HTTP exporter to ``{otlp_endpoint}/v1/traces``, or ``None`` when no endpoint is set."""
    endpoint = otlp_traces_url(settings)
    if endpoint is None:
        return None
    exporter = otlp_exporter(endpoint, settings.otlp_headers)
    return _RedactingBatch(exporter, max_queue_size=8192, schedule_delay_millis=500, max_export_batch_size=512)


def otlp_traces_url(settings: TracingSettings) -> str | None:
    """The collector's ``/v1/traces`` URL from ``[tracing] otlp_endpoint`` (a base URL or the full one)."""
    if not settings.otlp_endpoint:
        return None
    endpoint = settings.otlp_endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"


def otlp_exporter(endpoint: str, headers: Mapping[str, str]) -> SpanExporter:
    """An OTLP/HTTP exporter to ``endpoint`` that redacts every batch before encoding it."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return _RedactingExporter(OTLPSpanExporter(endpoint=endpoint, headers=dict(headers) or None, timeout=10))


class _RedactingExporter(SpanExporter):
    """Redacts each batch before the wrapped exporter encodes it: on the batch processor's thread, not the loop."""

    def __init__(self, inner: SpanExporter) -> None:
        self._inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        clean = []
        for span in spans:
            try:
                clean.append(redact_span(span))
            except Exception:  # never export a span that could not be redacted
                logger.warning("span=<%s> | redaction failed; span not exported", span.name, exc_info=True)
        return self._inner.export(clean) if clean else SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._inner.force_flush(timeout_millis)


class _RedactingBatch(BatchSpanProcessor):
    """The SDK's batch processor over a :class:`_RedactingExporter`: the router passes it spans as recorded."""

    redacts: Final = True


class TracingExport:
    """One platform's sinks on the process's router; :meth:`aclose` flushes and removes them.

    Attributes:
        router: The process's router; ``None`` when tracing is off.
        store_sink: The span store sink, if spans are stored in this process.
        otlp: The OTLP exporter's processor, if an endpoint is configured and spans are exported from this process.
        process_sink: The sink handing spans to a child process that stores and exports them (instead of the two
            above), if this process uses one.
        retention: The cleanup job, if this process runs it.
    """

    def __init__(
        self,
        router: SpanRouter | None,
        *,
        store_sink: SpanStoreSink | None,
        otlp: BatchSpanProcessor | None,
        retention: SpanRetention | None,
        process_sink: SpanProcessSink | None = None,
    ) -> None:
        self.router = router
        self.store_sink = store_sink
        self.otlp = otlp
        self.process_sink = process_sink
        self.retention = retention

    async def flush(self) -> None:
        """Write buffered spans to the store and send pending ones to the collector now."""
        if self.otlp is not None:
            await asyncio.to_thread(self.otlp.force_flush)
        if self.store_sink is not None:
            await self.store_sink.flush()
        if self.process_sink is not None:
            await self.process_sink.flush()

    async def aclose(self) -> None:
        """Stop receiving spans, then flush and stop each sink and the cleanup job."""
        for sink in (self.store_sink, self.otlp, self.process_sink):
            if sink is not None and self.router is not None:
                self.router.remove(sink)
        if self.retention is not None:
            await self.retention.aclose()
        if self.store_sink is not None:
            await self.store_sink.aclose()
        if self.process_sink is not None:
            await self.process_sink.aclose()
        if self.otlp is not None:
            otlp = self.otlp
            with contextlib.suppress(Exception):  # an unreachable collector must not block the shutdown for long
                await asyncio.to_thread(otlp.force_flush, 5_000)
            await asyncio.to_thread(otlp.shutdown)


def start_tracing(
    settings: TracingSettings,
    engine: AsyncEngine,
    *,
    cleanup: bool,
    clock: Callable[[], float] = time.time,
    span_process_url: str | None = None,
) -> TracingExport:
    """Register this platform's sinks on the process's router (call on the platform's event loop).

    With neither ``store_spans`` nor ``otlp_endpoint``, tracing is off: no provider is installed (spans cost next
    to nothing), unless something else installed one.

    Args:
        settings: ``[tracing]``.
        engine: The platform's store engine (the span store's database).
        cleanup: Run the retention job here (the process that runs the worker).
        clock: Epoch seconds for the retention job (tests inject one).
        span_process_url: The database URL for a span process: when given (and ``[tracing] export_process`` is
            on), a child process stores the spans instead of threads of this one. Pass it where span rows need no
            turn-taking with this process's writes (a worker; any process on PostgreSQL), never for an in-memory
            database. The OTLP export goes through a span process whenever ``export_process`` is on.
    """
    if not settings.store_spans and not settings.otlp_endpoint:
        logger.info("tracing=<off> | neither store_spans nor otlp_endpoint is set")
        return TracingExport(None, store_sink=None, otlp=None, retention=None)
    router = span_router(settings.service_name, settings.provider)
    retention: SpanRetention | None = None
    if cleanup and settings.store_spans:
        retention = SpanRetention(engine, retention_days=settings.retention_days, clock=clock)
        retention.start()
    otlp_url = otlp_traces_url(settings)
    in_child = settings.export_process
    store_in_child = in_child and settings.store_spans and span_process_url is not None
    process_sink: SpanProcessSink | None = None
    if store_in_child or (in_child and otlp_url is not None):
        targets = SpanTargets(
            database_url=span_process_url if store_in_child else None,
            otlp_endpoint=otlp_url,
            otlp_headers=dict(settings.otlp_headers),
        )
        process_sink = SpanProcessSink(targets)
        process_sink.start()
        router.add(process_sink)
    store_sink: SpanStoreSink | None = None
    if settings.store_spans and not store_in_child:
        store_sink = SpanStoreSink(SpanStore(engine))
        store_sink.start()
        router.add(store_sink)
    otlp = otlp_processor(settings) if process_sink is None else None
    if otlp is not None:
        router.add(otlp)
    logger.info(
        "store=<%s>, otlp=<%s> | tracing sinks registered",
        "span process" if store_in_child else "this process" if store_sink is not None else "off",
        ("span process" if process_sink is not None else "this process") if otlp_url else "off",
    )
    return TracingExport(router, store_sink=store_sink, otlp=otlp, retention=retention, process_sink=process_sink)
