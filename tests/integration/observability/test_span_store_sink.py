"""The span store sink and its retention job, on SQLite and PostgreSQL: spans written in batches off the request
path, a full buffer drops (and counts) instead of blocking, and spans past retention are deleted."""

from __future__ import annotations

import asyncio

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, TraceFlags
from tests.audit_rows import make_audit_row

from botfactory.observability import AuditRetention, SpanRetention, SpanStoreSink
from botfactory.store import AuditQuery, AuditRecord, AuditStore, BatchWriter, SpanStore, Store

DAY = 86_400.0
NOW = 1_700_000_000.0


def _span(span_id: int, *, session: str, started: float, parent: int | None = None) -> ReadableSpan:
    trace_id = 0x4BF92F3577B34DA6A3CE929D0E0E4736
    return ReadableSpan(
        name=f"span {span_id}",
        context=SpanContext(trace_id=trace_id, span_id=span_id, is_remote=False, trace_flags=TraceFlags(1)),
        parent=(
            SpanContext(trace_id=trace_id, span_id=parent, is_remote=False, trace_flags=TraceFlags(1))
            if parent
            else None
        ),
        attributes={"gen_ai.conversation.id": session, "botfactory.turn.id": f"turn-{session}"},
        start_time=int(started * 1e9),
        end_time=int((started + 0.25) * 1e9),
    )


async def test_finished_spans_land_in_the_store_and_close_writes_the_rest(store: Store) -> None:
    sink = SpanStoreSink(SpanStore(store.engine), flush_s=0.01)
    sink.start()
    sink.on_end(_span(1, session="s1", started=NOW))
    sink.on_end(_span(2, session="s1", started=NOW + 0.1, parent=1))
    sink.on_end(_span(3, session="s2", started=NOW + 0.2))
    await sink.aclose()
    sink.on_end(_span(4, session="s1", started=NOW + 0.3))  # after close: ignored, not an error

    rows = await SpanStore(store.engine).for_session("s1")
    assert [(r.name, r.parent_span_id) for r in rows] == [("span 1", None), ("span 2", "0000000000000001")]
    assert rows[0].turn_id == "turn-s1" and round(rows[0].duration_ms) == 250
    assert sink.written == 3 and sink.dropped == 0


async def test_spans_are_stored_redacted_and_once_each(store: Store) -> None:
    sink = SpanStoreSink(SpanStore(store.engine), flush_s=0.01)
    sink.start()
    leaky = _span(7, session="s7", started=NOW)
    leaky = ReadableSpan(
        name=leaky.name,
        context=leaky.context,
        attributes={**(leaky.attributes or {}), "botfactory.user": "grace@example.com"},
        start_time=leaky.start_time,
        end_time=leaky.end_time,
    )
    sink.on_end(leaky)
    await sink.flush()
    sink.on_end(leaky)  # exported twice (e.g. a retried batch): stored once
    await sink.aclose()

    rows = await SpanStore(store.engine).for_session("s7")
    assert [r.name for r in rows] == ["span 7"]
    assert rows[0].attributes["botfactory.user"] == "***"  # redacted by the sink, on its thread


async def test_a_full_buffer_drops_new_spans_and_counts_them(store: Store) -> None:
    sink = SpanStoreSink(SpanStore(store.engine), max_queue=2)  # not started: nothing drains the buffer
    for span_id in (1, 2, 3, 4):
        sink.on_end(_span(span_id, session="full", started=NOW))
    assert sink.dropped == 2
    assert await sink.flush() == 2
    assert [r.name for r in await SpanStore(store.engine).for_session("full")] == ["span 1", "span 2"]


async def test_the_retention_job_deletes_spans_older_than_the_retention_period(store: Store) -> None:
    sink = SpanStoreSink(SpanStore(store.engine))
    sink.on_end(_span(1, session="old", started=NOW - 8 * DAY))
    sink.on_end(_span(2, session="old", started=NOW - 6 * DAY))
    sink.on_end(_span(3, session="new", started=NOW - 60))
    await sink.flush()

    retention = SpanRetention(store.engine, retention_days=7, clock=lambda: NOW)
    assert await retention.run_once() == 1
    assert await retention.run_once() == 0  # running it again (another worker) deletes nothing more
    assert [r.name for r in await SpanStore(store.engine).for_session("old")] == ["span 2"]
    assert [r.name for r in await SpanStore(store.engine).for_session("new")] == ["span 3"]
    assert retention.purged == 1


async def test_the_audit_retention_job_deletes_rows_older_than_audit_retention(store: Store) -> None:
    def row(at: float) -> AuditRecord:
        return make_audit_row(at=at, principal="slack:T1:U1", position=1)

    audit = AuditStore(store.engine)
    await audit.insert([row(NOW - 91 * DAY), row(NOW - 89 * DAY), row(NOW)])
    job = AuditRetention(store.engine, retention_s=90 * DAY, interval_s=3600, clock=lambda: NOW)
    job.start()  # purges at once, then hourly
    for _ in range(200):
        if job.purged:
            break
        await asyncio.sleep(0.01)
    await job.aclose()

    assert job.purged == 1
    kept = await audit.list(AuditQuery(session_id="s1"))
    assert sorted(r.at for r in kept) == [NOW - 89 * DAY, NOW]


async def test_spans_go_through_the_runtime_s_writer_when_given_one_and_alone_again_after(
    store: Store, database_url: str
) -> None:
    writer = BatchWriter(database_url)
    sink = SpanStoreSink(SpanStore(store.engine), flush_s=0.01)
    sink.start()
    try:
        sink.write_through(writer)
        sink.on_end(_span(11, session="s11", started=NOW))
        await sink.flush()
        assert writer.batches == 1  # one transaction of the runtime's writer, not a connection of its own
        sink.write_through(None)  # e.g. the runtime stops before the tracing sinks do
        sink.on_end(_span(12, session="s11", started=NOW + 0.1))
        await sink.aclose()
        assert writer.batches == 1
    finally:
        await writer.close()
    rows = await SpanStore(store.engine).for_session("s11")
    assert [r.name for r in rows] == ["span 11", "span 12"]
    assert sink.written == 2 and sink.dropped == 0
