"""botfactory's own tracer provider: the OpenTelemetry tracing API with spans that cost a few µs to record.

The OpenTelemetry SDK's tracer spends 40–60 µs of a busy worker's CPU on each span (bounded attribute maps behind
a lock, every value checked and copied, sampler and processor calls); with seven spans a turn that alone cost a
worker a fifth to a third of its turns. :class:`FastTracerProvider` implements the same API — tracers, spans,
the current span in ``opentelemetry.context``, so ``trace.get_current_span``, ``use_span`` and W3C propagation
work as before — with a plain dict of attributes and a list of events. A finished :class:`FastSpan` is an SDK
:class:`~opentelemetry.sdk.trace.ReadableSpan`, so span processors (botfactory's span router, the SDK's batch
and simple processors, the OTLP exporter, an in-memory exporter) take it unchanged.

What it does differently from the SDK's provider:

- Sampling is parent-based always-on (the SDK's default): a span whose parent is not sampled is not recorded,
  every other one is. ``OTEL_TRACES_SAMPLER`` and the other ``OTEL_*`` variables are not read.
- At most 128 attributes, 128 events and 128 links per span (the SDK's default limits; extra ones are counted
  as dropped); string values are not truncated.
- A span is not locked: it belongs to the code that started it, as botfactory's spans do (one task each).

botfactory installs it when no tracer provider is installed and ``[tracing] provider`` is ``"botfactory"`` (the
default); ``"sdk"`` installs the SDK's provider instead, and a provider installed before botfactory starts
(``opentelemetry-instrument``, a test) is kept.
"""

from __future__ import annotations

import functools
import inspect
import logging
import random
import threading
import time
import traceback
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final, TypeVar

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.util import types as otel_types

__all__ = ["FastSpan", "FastTracer", "FastTracerProvider"]

logger = logging.getLogger(__name__)

MAX_ATTRIBUTES: Final = 128
MAX_EVENTS: Final = 128
MAX_LINKS: Final = 128

_SCALARS: Final = frozenset({str, bool, int, float})
_SAMPLED: Final = TraceFlags(TraceFlags.SAMPLED)
_UNSET: Final = Status(StatusCode.UNSET)
_random = random.Random()  # ids need uniqueness, not secrecy (the SDK uses the same generator)
_Function = TypeVar("_Function", bound=Callable[..., Any])


def _new_id(bits: int) -> int:
    while not (value := _random.getrandbits(bits)):  # zero is the invalid id
        pass
    return value


def _clean_value(value: object) -> otel_types.AnyValue:
    """An attribute value as OpenTelemetry allows it: scalars, bytes and ``None`` as they are, sequences as tuples,
    mappings as dicts (both cleaned in depth), anything else as its ``str()`` (``None`` if that fails)."""
    if value is None or type(value) in _SCALARS or isinstance(value, str | bool | int | float | bytes):
        return value  # type: ignore[return-value]
    if isinstance(value, Mapping):
        return {str(key): _clean_value(item) for key, item in value.items()}
    if isinstance(value, Sequence):
        return tuple(_clean_value(item) for item in value)
    try:
        return str(value)
    except Exception:
        return None


def _clean_attributes(attributes: Mapping[str, Any] | None, limit: int = MAX_ATTRIBUTES) -> tuple[dict[str, Any], int]:
    """``attributes`` as a new dict of clean values (keys must be non-empty strings), and how many were dropped."""
    clean: dict[str, Any] = {}
    dropped = 0
    if not attributes:
        return clean, dropped
    for key, value in attributes.items():
        if not key or type(key) is not str:
            logger.warning("key=<%r> | span attribute keys must be non-empty strings; attribute dropped", key)
            dropped += 1
        elif len(clean) >= limit:
            dropped += 1
        else:
            clean[key] = value if type(value) in _SCALARS else _clean_value(value)
    return clean, dropped


class FastSpan(trace_api.Span, ReadableSpan):
    """A span being recorded; once ended, the read-only span every processor receives.

    Created by :meth:`FastTracer.start_span`, never directly.
    """

    def __init__(
        self,
        *,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: dict[str, Any],
        dropped_attributes: int,
        links: list[Link],
        start_time: int,
        provider: FastTracerProvider,
        scope: InstrumentationScope,
        record_exception: bool,
        set_status_on_exception: bool,
    ) -> None:
        ReadableSpan.__init__(
            self,
            name=name,
            context=context,
            parent=parent,
            resource=provider.resource,
            attributes=attributes,
            events=[],
            links=links,
            kind=kind,
            status=_UNSET,
            start_time=start_time,
            instrumentation_scope=scope,
        )
        self._provider = provider
        self._dropped_attributes = dropped_attributes
        self._dropped_events = 0
        self._dropped_links = 0
        self._record_exception = record_exception
        self._set_status_on_exception = set_status_on_exception

    # What processors read (ReadableSpan's own properties read the fields set above).

    @property
    def dropped_attributes(self) -> int:
        return self._dropped_attributes

    @property
    def dropped_events(self) -> int:
        return self._dropped_events

    @property
    def dropped_links(self) -> int:
        return self._dropped_links

    # The OpenTelemetry API.

    def get_span_context(self) -> SpanContext:
        return self._context  # type: ignore[return-value]

    def is_recording(self) -> bool:
        return self._end_time is None

    def _ended(self, what: str) -> bool:
        if self._end_time is None:
            return False
        logger.warning("span=<%s> | %s on an ended span; ignored", self._name, what)
        return True

    def set_attribute(self, key: str, value: otel_types.AnyValue) -> None:
        if self._ended("set_attribute"):
            return
        attributes: dict[str, Any] = self._attributes  # type: ignore[assignment]
        if not key or type(key) is not str:
            logger.warning("key=<%r> | span attribute keys must be non-empty strings; attribute dropped", key)
            self._dropped_attributes += 1
        elif len(attributes) >= MAX_ATTRIBUTES and key not in attributes:
            self._dropped_attributes += 1
        else:
            attributes[key] = value if type(value) in _SCALARS else _clean_value(value)

    def set_attributes(self, attributes: Mapping[str, otel_types.AnyValue]) -> None:
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def add_event(self, name: str, attributes: otel_types.Attributes = None, timestamp: int | None = None) -> None:
        if self._ended("add_event"):
            return
        events: list[Event] = self._events  # type: ignore[assignment]
        if len(events) >= MAX_EVENTS:
            self._dropped_events += 1
            return
        clean, _ = _clean_attributes(attributes)
        events.append(Event(name, clean, timestamp if timestamp is not None else time.time_ns()))

    def add_link(self, context: SpanContext, attributes: otel_types.Attributes = None) -> None:
        if self._ended("add_link") or (not context.is_valid and not attributes):
            return
        links: list[Link] = self._links  # type: ignore[assignment]
        if len(links) >= MAX_LINKS:
            self._dropped_links += 1
            return
        links.append(Link(context, _clean_attributes(attributes)[0]))

    def update_name(self, name: str) -> None:
        if not self._ended("update_name"):
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        """As the SDK does: OK is final, UNSET is ignored, a ``Status`` carries its own description."""
        if self._ended("set_status"):
            return
        if isinstance(status, StatusCode):
            status = Status(status, description)
        elif description is not None:
            logger.warning(
                "description=<%s> | ignored: pass either a Status or a StatusCode and a description", description
            )
        if self._status.status_code is StatusCode.OK or status.status_code is StatusCode.UNSET:
            return
        self._status = status

    def record_exception(
        self,
        exception: BaseException,
        attributes: otel_types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        """An ``exception`` event with the semantic-convention attributes (type, message, stack trace, escaped)."""
        kind = type(exception)
        module = kind.__module__
        event: dict[str, Any] = {
            "exception.type": f"{module}.{kind.__qualname__}" if module and module != "builtins" else kind.__qualname__,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
        }
        if attributes:
            event.update(attributes)
        self.add_event("exception", event, timestamp)

    def end(self, end_time: int | None = None) -> None:
        """Finish the span and hand it to every span processor (a failing one is logged, never raised)."""
        if self._ended("end"):
            return
        self._end_time = end_time if end_time is not None else time.time_ns()
        for processor in self._provider.processors:
            try:
                processor.on_end(self)
            except Exception:
                logger.warning("processor=<%s> | span processor failed", type(processor).__name__, exc_info=True)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: types.TracebackType | None,
    ) -> None:
        """``with tracer.start_span(...)``: an exception leaving the block is recorded (as the SDK does), then the
        span ends."""
        if exc_val is not None and self.is_recording():
            if self._record_exception:
                self.record_exception(exc_val, escaped=True)
            if self._set_status_on_exception:
                self.set_status(Status(StatusCode.ERROR, f"{type(exc_val).__name__}: {exc_val}"))
        self.end()


class _CurrentSpan:
    """``start_as_current_span``: a context manager (also usable as a decorator of functions and coroutines)."""

    __slots__ = ("_end_on_exit", "_span", "_start", "_token")

    def __init__(self, start: Callable[[], trace_api.Span], end_on_exit: bool) -> None:
        self._start = start
        self._end_on_exit = end_on_exit
        self._span: trace_api.Span | None = None
        self._token: object = None

    def __enter__(self) -> trace_api.Span:
        span = self._span = self._start()
        self._token = context_api.attach(trace_api.set_span_in_context(span))
        return span

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: types.TracebackType | None
    ) -> None:
        span = self._span
        assert span is not None
        context_api.detach(self._token)  # type: ignore[arg-type]
        # As use_span: cancellation is not an error. Only a FastSpan records; it carries start_span's options.
        if isinstance(exc, Exception) and isinstance(span, FastSpan) and span.is_recording():
            if span._record_exception:
                span.record_exception(exc)
            if span._set_status_on_exception:
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        if self._end_on_exit:
            span.end()

    def __call__(self, function: _Function) -> _Function:
        """Use as a decorator: each call of ``function`` runs in a span of its own."""
        fresh = functools.partial(_CurrentSpan, self._start, self._end_on_exit)
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                with fresh():
                    return await function(*args, **kwargs)

            return run_async  # type: ignore[return-value]

        @functools.wraps(function)
        def run(*args: Any, **kwargs: Any) -> Any:
            with fresh():
                return function(*args, **kwargs)

        return run  # type: ignore[return-value]


class FastTracer(trace_api.Tracer):
    """Starts :class:`FastSpan`\\s for one instrumentation scope; from :meth:`FastTracerProvider.get_tracer`."""

    def __init__(self, provider: FastTracerProvider, scope: InstrumentationScope) -> None:
        self._provider = provider
        self._scope = scope

    def start_span(
        self,
        name: str,
        context: context_api.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: otel_types.Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace_api.Span:
        """A new span, child of the current span of ``context`` (of the current context when ``None``)."""
        parent = trace_api.get_current_span(context).get_span_context()
        if parent.is_valid:
            if not parent.trace_flags.sampled:  # the caller decided not to record this trace
                return NonRecordingSpan(
                    SpanContext(
                        parent.trace_id,
                        _new_id(64),
                        is_remote=False,
                        trace_flags=parent.trace_flags,
                        trace_state=parent.trace_state,
                    )
                )
            trace_id, state, parent_context = parent.trace_id, parent.trace_state, parent
        else:
            trace_id, state, parent_context = _new_id(128), None, None
        clean, dropped = _clean_attributes(attributes)
        span_links = [Link(link.context, _clean_attributes(link.attributes)[0]) for link in links or ()]
        span = FastSpan(
            name=name,
            context=SpanContext(trace_id, _new_id(64), is_remote=False, trace_flags=_SAMPLED, trace_state=state),
            parent=parent_context,
            kind=kind,
            attributes=clean,
            dropped_attributes=dropped,
            links=span_links[:MAX_LINKS],
            start_time=start_time if start_time is not None else time.time_ns(),
            provider=self._provider,
            scope=self._scope,
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        )
        span._dropped_links = max(0, len(span_links) - MAX_LINKS)
        for processor in self._provider.processors:
            processor.on_start(span, parent_context=context)  # type: ignore[arg-type]
        return span

    def start_as_current_span(  # type: ignore[override]
        self, name: str, *args: Any, end_on_exit: bool = True, **kwargs: Any
    ) -> Iterator[trace_api.Span]:
        """A context manager that starts a span (``start_span``'s arguments) and makes it current until the block
        ends; it ends the span then unless ``end_on_exit`` is false."""
        return _CurrentSpan(functools.partial(self.start_span, name, *args, **kwargs), end_on_exit)  # type: ignore[return-value]


class FastTracerProvider(trace_api.TracerProvider):
    """Tracers whose spans go to the span processors added here (``add_span_processor``, as on the SDK's).

    Args:
        resource: The resource of every span (``service.name`` and the like).
    """

    def __init__(self, resource: Resource) -> None:
        self.resource = resource
        self.processors: tuple[SpanProcessor, ...] = ()  # replaced, never mutated: spans read it without a lock
        self._lock = threading.Lock()

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: otel_types.Attributes = None,
    ) -> trace_api.Tracer:
        scope = InstrumentationScope(
            instrumenting_module_name or "", instrumenting_library_version, schema_url, attributes
        )
        return FastTracer(self, scope)

    def add_span_processor(self, processor: SpanProcessor) -> None:
        """Send every span started from now on to ``processor`` (``on_start`` and ``on_end``)."""
        with self._lock:
            self.processors = (*self.processors, processor)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Flush every processor; ``False`` if one did not finish in time."""
        return all([processor.force_flush(timeout_millis) for processor in self.processors])

    def shutdown(self) -> None:
        """Shut every processor down."""
        for processor in self.processors:
            processor.shutdown()
