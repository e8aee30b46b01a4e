"""The span store sink: finished spans written to botfactory's own database in batches, off the request path.

:meth:`SpanStoreSink.on_end` only appends the span to a bounded buffer (no lock, no I/O, no redaction). A task on the
platform's event loop drains it every ``flush_s`` (sooner when a batch is full), redacts and converts the spans to
:class:`~botfactory.store.SpanRecord` rows on a thread, and writes them in one transaction of their own (measured:
joining the runtime's batched transactions instead made turns wait behind the span rows). When the database falls behind and
the buffer is full, new spans are dropped, counted (:attr:`SpanStoreSink.dropped`) and logged; :meth:`aclose`
writes what is buffered.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import math
from collections.abc import Iterator, Sequence
from typing import Any, Final

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import StatusCode

from botfactory.observability.redaction import redact_span
from botfactory.store import BatchWriter, SpanRecord, SpanStore

__all__ = ["BufferedSpanSink", "SpanStoreSink", "redacted_records", "span_record"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_QUEUE: Final = 20_000
_BATCH: Final = 512
_PLAIN: Final = frozenset({str, int, bool})
_STATUS = {StatusCode.UNSET: "unset", StatusCode.OK: "ok", StatusCode.ERROR: "error"}


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, tuple | list):
        return [_json_safe(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def redacted_records(spans: Sequence[ReadableSpan]) -> list[SpanRecord]:
    """Finished spans as redacted store rows (a span that cannot be redacted is left out)."""
    records = []
    for span in spans:
        try:
            record = span_record(redact_span(span))
        except Exception:  # never store a span that could not be redacted
            logger.warning("span=<%s> | redaction failed; span not stored", span.name, exc_info=True)
            continue
        if record is not None:
            records.append(record)
    return records


def _text(value: Any) -> str | None:
    return str(value) if value is not None and value != "" else None


def span_record(span: ReadableSpan) -> SpanRecord | None:
    """A finished span as a row of the span store; ``None`` for a span without a valid context."""
    context = span.context
    if context is None or not context.is_valid:
        return None
    attributes = {
        key: value if type(value) in _PLAIN else _json_safe(value) for key, value in (span.attributes or {}).items()
    }
    events = [
        {
            "name": event.name,
            "time": event.timestamp / 1e9,
            "attributes": {key: _json_safe(v) for key, v in (event.attributes or {}).items()},
        }
        for event in span.events
    ]
    start = (span.start_time or 0) / 1e9
    return SpanRecord(
        trace_id=format(context.trace_id, "032x"),
        span_id=format(context.span_id, "016x"),
        parent_span_id=format(span.parent.span_id, "016x") if span.parent is not None else None,
        name=span.name[:256],
        kind=span.kind.name.lower(),
        start_time=start,
        end_time=(span.end_time or span.start_time or 0) / 1e9,
        status=_STATUS.get(span.status.status_code, "unset"),
        status_message=span.status.description or None,
        session_id=_text(attributes.get("gen_ai.conversation.id")),
        turn_id=_text(attributes.get("botfactory.turn.id")),
        bot=_text(attributes.get("botfactory.bot")),
        attributes=attributes,
        events=events or None,
    )


class BufferedSpanSink(SpanProcessor):
    """A span processor that buffers finished spans and has a task on the platform's loop :meth:`flush` them.

    :meth:`on_end` only appends (no lock, no I/O, no redaction), from whichever thread ends a span; the task drains
    the buffer every ``flush_s``, sooner when a batch is full. When the buffer is full new spans are dropped,
    counted (:attr:`dropped`) and logged. Start it with :meth:`start` on the loop; :meth:`aclose` flushes and stops.

    Args:
        flush_s: Longest a span waits in the buffer.
        max_queue: Spans buffered at most; beyond it new spans are dropped (and counted).
    """

    redacts: Final = True
    """It redacts spans itself, off the event loop (the router passes them as recorded)."""

    def __init__(self, *, flush_s: float, max_queue: int) -> None:
        self._flush_s = flush_s
        self._max_queue = max_queue
        self._buffer: collections.deque[ReadableSpan] = collections.deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.dropped = 0
        """Spans lost: the buffer was full, or they could not be written."""
        self.written = 0
        """Spans written so far."""

    def start(self) -> None:
        """Start the background task on the running loop."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._task = self._loop.create_task(self._run(), name=f"botfactory-{type(self).__name__}")

    # SpanProcessor: called by the SDK from whichever thread ends a span.

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Nothing to do when a span starts."""

    def on_end(self, span: ReadableSpan) -> None:
        """Buffer a finished span (drop it when the buffer is full)."""
        if self._closing:
            return
        if len(self._buffer) >= self._max_queue:
            self._count(0, 1)
            if self.dropped == 1 or self.dropped % 1000 == 0:
                logger.warning("dropped=<%d> | span buffer full; spans dropped", self.dropped)
            return
        self._buffer.append(span)
        if len(self._buffer) == _BATCH and self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def shutdown(self) -> None:
        """Stop accepting spans (the task is stopped by :meth:`aclose`)."""
        self._closing = True

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Spans are written by the background task; nothing to do synchronously."""
        return True

    async def flush(self) -> int:
        """Write every buffered span now; returns how many were written."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Stop accepting spans, write what is buffered and stop the background task."""
        self._closing = True
        if self._wake is not None:
            self._wake.set()
        if self._task is not None:
            task, self._task = self._task, None
            await asyncio.gather(task, return_exceptions=True)
        await self.flush()

    def _batches(self) -> Iterator[list[ReadableSpan]]:
        """The buffer, taken in batches as it is drained."""
        while self._buffer:
            yield [self._buffer.popleft() for _ in range(min(_BATCH, len(self._buffer)))]

    async def _flush_round(self) -> None:
        await self.flush()

    async def _run(self) -> None:
        assert self._wake is not None
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._flush_s)
            self._wake.clear()
            try:
                await self._flush_round()
            except Exception:  # never let the task die: the next round tries again
                logger.warning("sink=<%s> | writing spans failed", type(self).__name__, exc_info=True)

    def _count(self, written: int, dropped: int) -> None:
        self.written += written
        self.dropped += dropped


class SpanStoreSink(BufferedSpanSink):
    """A span processor that keeps finished spans, redacted, in a :class:`SpanStore`.

    Start it on the loop that owns the store with :meth:`start`; stop it with :meth:`aclose`.

    Args:
        store: Where rows go.
        flush_s: Longest a span waits in the buffer.
        max_queue: Spans buffered at most; beyond it new spans are dropped (and counted).
    """

    def __init__(self, store: SpanStore, *, flush_s: float = 0.5, max_queue: int = DEFAULT_MAX_QUEUE) -> None:
        super().__init__(flush_s=flush_s, max_queue=max_queue)
        self._store = store
        self._writing = asyncio.Lock()
        self._writer: BatchWriter | None = None

    def write_through(self, writer: BatchWriter | None) -> None:
        """Insert rows as transactions of ``writer`` (the runtime's) instead of on a connection of their own
        (``None``: on their own again, e.g. before that writer closes).

        On SQLite only one connection writes at a time, and one that finds the file locked sleeps (1, 2, 5, 10,
        … ms) before trying again: a span insert racing the runtime's batches delayed both, and with them the
        acks waiting for their inbox rows. Through the writer they take turns instead.
        """
        self._writer = writer

    async def flush(self) -> int:
        """Write every buffered span now; returns how many were written."""
        written = 0
        async with self._writing:
            for batch in self._batches():
                # Redacting and converting is CPU work: on a thread, not the event loop turns run on.
                records = await asyncio.to_thread(redacted_records, batch)
                await self._insert(records)
                written += len(records)
        return written

    async def _insert(self, records: list[SpanRecord]) -> None:
        try:
            if self._writer is not None and records:
                await self._writer.write(functools.partial(SpanStore.insert_on, records=records), alone=True)
            else:
                await self._store.insert(records)
        except Exception:  # the console loses these spans; the turn and the OTLP export are unaffected
            logger.warning("spans=<%d> | span store write failed; spans dropped", len(records), exc_info=True)
            self.dropped += len(records)
            return
        self.written += len(records)
