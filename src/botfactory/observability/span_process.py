"""Spans written from a process of their own: the span store and the OTLP export without the worker's CPU.

Recording a span costs the process that ends it 15–35 µs in the OpenTelemetry SDK; redacting it, turning it into a
span-store row, inserting the row and encoding it for OTLP cost about three times that again. On threads of the same
process that work shares one GIL with the turns (measured: a worker draining its queue did half the turns with
spans stored and exported). :class:`SpanProcessSink` keeps only the first part: it buffers finished spans, packs
each batch as plain tuples (a few µs per span) and hands it over a pipe to ``python -m
botfactory.observability._span_child``, a child it starts, which rebuilds the spans, redacts them
(:func:`~botfactory.observability.redaction.redact_span`, as the in-process sinks do), inserts the rows on a
connection of its own and exports to the OTLP collector.

The pipe carries length-prefixed pickles in both directions, between this process and the child it started (no
one else can write to it): the child's settings first, then ``("spans", seq, resource, spans)`` batches, each
answered by ``("done", seq, written, dropped)``, and ``("close",)``. A child that dies (killed, out of memory)
costs the spans it had not acknowledged, which are counted in :attr:`SpanProcessSink.dropped` and logged; the
next batch starts a new child. If the parent dies, the child reads the end of its input, writes what it has and
exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Final

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from botfactory.observability.span_sink import DEFAULT_MAX_QUEUE, BufferedSpanSink, redacted_records

__all__ = ["SpanProcessSink", "SpanTargets", "pack_spans", "unpack_spans"]

logger = logging.getLogger(__name__)

_HEADER = struct.Struct("!I")
_MAX_FRAME: Final = 256 * 1024 * 1024
_START_TIMEOUT_S: Final = 60.0
_CLOSE_TIMEOUT_S: Final = 30.0
_RESTART_AFTER_S: Final = 5.0
_NICENESS: Final = 10
_ROWS_PER_TRANSACTION: Final = 64
"""Span rows per transaction in the child: short ones, so the platform's own writes (on SQLite, one writer at a
time) never wait long behind the span store."""
_BETWEEN_TRANSACTIONS_S: Final = 0.002

PackedSpan = tuple[Any, ...]


@dataclass(frozen=True)
class SpanTargets:
    """Where the child sends spans: the span store's database and/or an OTLP/HTTP collector.

    Attributes:
        database_url: The platform's database (the child opens it without migrating); ``None``: spans not stored.
        otlp_endpoint: The collector's full ``/v1/traces`` URL; ``None``: no export.
        otlp_headers: Headers sent with every export (travel over the pipe, never on a command line).
    """

    database_url: str | None = None
    otlp_endpoint: str | None = None
    otlp_headers: dict[str, str] = field(default_factory=dict)


def _context(trace_id: int, span_id: int, flags: int, state: tuple[tuple[str, str], ...] | None) -> SpanContext:
    return SpanContext(
        trace_id=trace_id,
        span_id=span_id,
        is_remote=False,
        trace_flags=TraceFlags(flags),
        trace_state=TraceState(list(state)) if state else None,
    )


def _pack_one(span: ReadableSpan) -> PackedSpan | None:
    context = span.context
    if context is None or not context.is_valid:
        return None
    parent = span.parent
    scope = span.instrumentation_scope
    attributes = span.attributes  # a read-only view: copy() copies the SDK's mapping in one go
    return (
        context.trace_id,
        context.span_id,
        int(context.trace_flags),
        tuple(context.trace_state.items()) or None,
        (parent.span_id, parent.is_remote) if parent is not None else None,
        span.name,
        span.kind.value,
        span.start_time,
        span.end_time,
        span.status.status_code.value,
        span.status.description,
        attributes.copy() if attributes else None,  # type: ignore[attr-defined]
        [(e.name, e.timestamp, dict(e.attributes) if e.attributes else None) for e in span.events] or None,
        [(link.context.trace_id, link.context.span_id, dict(link.attributes or {})) for link in span.links] or None,
        (scope.name, scope.version) if scope is not None else None,
    )


def pack_spans(spans: Sequence[ReadableSpan]) -> tuple[dict[str, Any], list[PackedSpan]]:
    """Finished spans as plain tuples, with their resource's attributes (one provider: one resource)."""
    packed = [p for p in map(_pack_one, spans) if p is not None]
    resource = dict(spans[0].resource.attributes) if spans else {}
    return resource, packed


def unpack_spans(resource_attributes: dict[str, Any], packed: Sequence[PackedSpan]) -> list[ReadableSpan]:
    """The spans :func:`pack_spans` packed, as SDK spans again (for redaction, the span store and OTLP)."""
    resource = Resource(resource_attributes)
    spans = []
    for (
        trace_id,
        span_id,
        flags,
        state,
        parent,
        name,
        kind,
        start,
        end,
        status_code,
        status_text,
        attributes,
        events,
        links,
        scope,
    ) in packed:
        spans.append(
            ReadableSpan(
                name=name,
                context=_context(trace_id, span_id, flags, state),
                parent=(
                    SpanContext(trace_id, parent[0], is_remote=parent[1], trace_flags=TraceFlags(flags))
                    if parent is not None
                    else None
                ),
                resource=resource,
                attributes=attributes or {},
                events=[Event(n, a or {}, t) for n, t, a in events or ()],
                links=[Link(_context(t, s, flags, None), a) for t, s, a in links or ()],
                kind=SpanKind(kind),
                status=Status(StatusCode(status_code), status_text),
                start_time=start,
                end_time=end,
                instrumentation_scope=InstrumentationScope(scope[0], scope[1]) if scope is not None else None,
            )
        )
    return spans


def _write_frame(stream: IO[bytes], message: object) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _read_frame(stream: IO[bytes]) -> Any:
    """The next message, or ``None`` at the end of the stream."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(header)
    if size > _MAX_FRAME:
        raise ValueError(f"span pipe frame of {size} bytes is larger than {_MAX_FRAME}")
    data = stream.read(size)
    if len(data) < size:
        return None
    return pickle.loads(data)  # written by our own parent (or child) over a private pipe


class _Child:
    """One running child: its process, the thread reading its answers, and the batches it has not answered."""

    def __init__(self, targets: SpanTargets, on_done: Callable[[int, int], None]) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(  # our own module, with this interpreter
            [sys.executable, "-m", "botfactory.observability._span_child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.stdin: IO[bytes] = self.process.stdin
        self.pending: dict[int, int] = {}  # seq -> spans in the batch
        self.lock = threading.Lock()
        self.gone = threading.Event()
        _write_frame(self.stdin, targets)
        self._reader = threading.Thread(
            target=self._read, args=(self.process.stdout, on_done), name="botfactory-span-process-reader", daemon=True
        )
        self._reader.start()

    def _read(self, stdout: IO[bytes], on_done: Callable[[int, int], None]) -> None:
        try:
            while (message := _read_frame(stdout)) is not None:
                if message[0] == "done":
                    _, seq, written, dropped = message
                    with self.lock:
                        self.pending.pop(seq, None)
                    on_done(written, dropped)
        except Exception:  # a broken frame: treat as a lost child
            logger.warning("the span process sent something unreadable", exc_info=True)
        finally:
            stdout.close()
            self.gone.set()

    def send(self, seq: int, message: object, spans: int) -> None:
        with self.lock:
            self.pending[seq] = spans
        _write_frame(self.stdin, message)

    def lost(self) -> int:
        """Spans sent but never acknowledged."""
        with self.lock:
            lost, self.pending = sum(self.pending.values()), {}
        return lost

    def close(self, timeout_s: float) -> None:
        """Ask the child to finish (it writes what it was sent) and wait for it; kill it past ``timeout_s``."""
        with contextlib.suppress(OSError, ValueError):
            _write_frame(self.stdin, ("close",))
        self.reap(timeout_s)

    def reap(self, timeout_s: float = 0.0) -> None:
        """Close the pipe, wait up to ``timeout_s`` for the child to exit, then kill it and collect it."""
        with contextlib.suppress(OSError, ValueError):
            self.stdin.close()
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            if timeout_s:
                logger.warning("the span process did not stop within %g s; killed", timeout_s)
            self.process.kill()
            self.process.wait()
        self.gone.wait(timeout=5)


class SpanProcessSink(BufferedSpanSink):
    """A span processor that hands finished spans to a child process, which stores and exports them.

    Start it on the platform's event loop with :meth:`start`; stop it with :meth:`aclose` (which waits until the
    child has written everything it was sent).

    Args:
        targets: Where the child sends spans.
        flush_s: Longest a span waits in this process before it is sent.
        max_queue: Spans buffered at most; beyond it new spans are dropped (and counted).
    """

    def __init__(self, targets: SpanTargets, *, flush_s: float = 0.5, max_queue: int = DEFAULT_MAX_QUEUE) -> None:
        super().__init__(flush_s=flush_s, max_queue=max_queue)
        self._targets = targets
        self._sending = asyncio.Lock()
        self._child: _Child | None = None
        self._seq = 0
        self._next_start = 0.0
        self._counts = threading.Lock()

    @property
    def child_pid(self) -> int | None:
        """The running child's process id (``None`` before the first start or after a loss)."""
        return self._child.process.pid if self._child is not None and self._child.process.poll() is None else None

    def start(self) -> None:
        """Start the child and the background sender on the running loop."""
        self._child = self._start_child()
        super().start()

    async def flush(self, timeout_s: float = _CLOSE_TIMEOUT_S) -> int:
        """Send every buffered span and wait until the child has written them; returns how many it wrote."""
        async with self._sending:
            before = self.written
            for batch in self._batches():
                await self._send(batch)
            await self._settled(timeout_s)
            return self.written - before

    async def aclose(self) -> None:
        """Stop accepting spans, send what is buffered, wait for the child to write it and stop the child."""
        await super().aclose()
        child, self._child = self._child, None
        if child is not None:
            await asyncio.to_thread(child.close, _CLOSE_TIMEOUT_S)
            self._lose(child)

    async def _flush_round(self) -> None:
        await self.flush(timeout_s=0)  # send; the answers are counted when they come

    async def _send(self, batch: list[ReadableSpan]) -> None:
        resource, packed = await asyncio.to_thread(pack_spans, batch)
        if not packed:
            return
        child = self._live_child()
        if child is None:
            self._count(0, len(packed))
            return
        self._seq += 1
        try:
            await asyncio.to_thread(child.send, self._seq, ("spans", self._seq, resource, packed), len(packed))
        except (OSError, ValueError):
            logger.warning("spans=<%d> | the span process is gone; spans dropped", len(packed))
            self._lose(child)

    async def _settled(self, timeout_s: float) -> None:
        """Wait (up to ``timeout_s``) until the child has answered every batch, or is gone."""
        child = self._child
        if child is None:
            return
        deadline = asyncio.get_running_loop().time() + timeout_s
        while child.pending and not child.gone.is_set():
            if asyncio.get_running_loop().time() >= deadline:
                return
            await asyncio.sleep(0.005)
        if child.gone.is_set():
            self._lose(child)

    def _live_child(self) -> _Child | None:
        child = self._child
        if child is not None and not child.gone.is_set() and child.process.poll() is None:
            return child
        if child is not None:
            self._lose(child)
        assert self._loop is not None
        if self._loop.time() < self._next_start:
            return None
        self._next_start = self._loop.time() + _RESTART_AFTER_S
        try:
            self._child = self._start_child()
        except Exception:
            logger.warning("the span process could not be started; spans dropped", exc_info=True)
            return None
        return self._child

    def _start_child(self) -> _Child:
        child = _Child(self._targets, self._count)
        logger.info("pid=<%d> | span process started", child.process.pid)
        return child

    def _lose(self, child: _Child) -> None:
        child.reap()
        lost = child.lost()
        if self._child is child:
            self._child = None
        if lost:
            self._count(0, lost)
            code = child.process.poll()
            logger.warning(
                "spans=<%d>, exit=<%s> | the span process stopped before writing these spans; they are lost",
                lost,
                code,
            )

    def _count(self, written: int, dropped: int) -> None:  # also called from the thread reading the answers
        with self._counts:
            super()._count(written, dropped)


# The child.


async def _serve(targets: SpanTargets, stdin: IO[bytes], stdout: IO[bytes]) -> None:
    from opentelemetry.sdk.trace.export import SpanExportResult

    from botfactory.observability.export import otlp_exporter
    from botfactory.store import SpanStore, Store

    store = await Store.open(targets.database_url, migrate=False) if targets.database_url else None
    exporter = otlp_exporter(targets.otlp_endpoint, targets.otlp_headers) if targets.otlp_endpoint else None
    try:
        while (message := await asyncio.to_thread(_read_frame, stdin)) is not None and message[0] == "spans":
            _, seq, resource, packed = message
            spans = unpack_spans(resource, packed)
            written = dropped = 0
            if exporter is not None:
                result = await asyncio.to_thread(exporter.export, spans)
                if store is None:
                    written = len(spans) if result is SpanExportResult.SUCCESS else 0
                    dropped = len(spans) - written
            if store is not None:
                records = redacted_records(spans)
                dropped += len(spans) - len(records)
                span_store = SpanStore(store.engine)
                for start in range(0, len(records), _ROWS_PER_TRANSACTION):
                    if start:
                        await asyncio.sleep(_BETWEEN_TRANSACTIONS_S)  # a writer waiting for the lock gets it now
                    chunk = records[start : start + _ROWS_PER_TRANSACTION]
                    try:
                        await span_store.insert(chunk)
                        written += len(chunk)
                    except Exception:  # the console loses these spans; the next chunk tries again
                        logger.warning("spans=<%d> | span store write failed; spans dropped", len(chunk), exc_info=True)
                        dropped += len(chunk)
            _write_frame(stdout, ("done", seq, written, dropped))
    finally:
        if exporter is not None:
            exporter.shutdown()
        if store is not None:
            await store.close()


def child_main() -> None:
    """The child (``python -m botfactory.observability._span_child``): read its targets, then batches of spans
    from stdin until it ends; answers go to stdout."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but answers may reach the parent's pipe
    with contextlib.suppress(OSError):
        os.nice(_NICENESS)  # background work: when the cores are busy, turns and acks go first
    # Ctrl-C in a terminal and a service manager's SIGTERM reach the whole process group: the child follows its
    # parent instead, which writes the last spans and closes the pipe as it shuts down (or dies: end of input).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    targets = _read_frame(stdin)
    if not isinstance(targets, SpanTargets):
        raise SystemExit("the span process is started by botfactory, not by hand")
    asyncio.run(_serve(targets, stdin, stdout))
