"""Spans stored and exported by a child process (``[tracing] export_process``), on SQLite and PostgreSQL: what the
child writes is what the in-process sinks would (redacted, parents and events kept, exported over OTLP), a child
that dies is replaced and the spans it lost are counted, and only the processes that should use one do."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags
from tests.integration.observability.otlp_receiver import otlp_receiver

from botfactory.config import Settings, TracingSettings
from botfactory.observability import SpanProcessSink, SpanTargets, start_tracing
from botfactory.observability.redaction import CONTENT_RECORDED
from botfactory.server.platform import _span_process_url
from botfactory.store import SpanStore, Store

TRACE = 0x4BF92F3577B34DA6A3CE929D0E0E4736
NOW = 1_700_000_000.0


def _span(span_id: int, *, session: str = "s1", parent: int | None = None, **attributes: object) -> ReadableSpan:
    return ReadableSpan(
        name=f"span {span_id}",
        context=SpanContext(trace_id=TRACE, span_id=span_id, is_remote=False, trace_flags=TraceFlags(1)),
        parent=SpanContext(TRACE, parent, is_remote=False, trace_flags=TraceFlags(1)) if parent else None,
        resource=Resource({"service.name": "botfactory-test"}),
        attributes={"gen_ai.conversation.id": session, "botfactory.turn.id": f"turn-{session}", **attributes},
        events=[Event("retry", {"attempt": 2}, int((NOW + 0.1) * 1e9))] if parent else [],
        kind=SpanKind.CLIENT if parent else SpanKind.INTERNAL,
        start_time=int((NOW + span_id) * 1e9),
        end_time=int((NOW + span_id + 0.25) * 1e9),
    )


async def test_the_child_stores_and_exports_spans_redacted_as_the_in_process_sinks_do(
    store: Store, database_url: str
) -> None:
    with otlp_receiver() as receiver:
        sink = SpanProcessSink(
            SpanTargets(database_url=database_url, otlp_endpoint=f"{receiver.url}/v1/traces"), flush_s=0.01
        )
        sink.start()
        try:
            sink.on_end(_span(1, **{"botfactory.user": "grace@example.com", "gen_ai.input.messages": "[secret]"}))
            sink.on_end(_span(2, parent=1, **{CONTENT_RECORDED: True, "gen_ai.input.messages": "[opted in]"}))
            assert await sink.flush() == 2
        finally:
            await sink.aclose()
        received = {s.name: s for s in receiver.spans}

    rows = {r.name: r for r in await SpanStore(store.engine).for_session("s1")}
    assert set(rows) == {"span 1", "span 2"} and sink.written == 2 and sink.dropped == 0
    assert rows["span 1"].attributes["botfactory.user"] == "***"  # PII masked by the child
    assert "gen_ai.input.messages" not in rows["span 1"].attributes  # content without the bot's opt-in: dropped
    assert rows["span 2"].attributes["gen_ai.input.messages"] == "[opted in]"
    assert rows["span 2"].parent_span_id == "0000000000000001" and rows["span 2"].kind == "client"
    assert rows["span 2"].events == [{"name": "retry", "time": NOW + 0.1, "attributes": {"attempt": 2}}]
    assert round(rows["span 1"].duration_ms) == 250 and rows["span 1"].turn_id == "turn-s1"
    assert set(received) == {"span 1", "span 2"}
    assert received["span 1"].attributes["botfactory.user"] == "***"
    assert received["span 2"].parent_span_id == "0000000000000001"
    assert received["span 1"].resource["service.name"] == "botfactory-test"
    assert sink.child_pid is None  # stopped with the sink


async def test_a_child_that_dies_is_replaced_and_the_spans_it_had_not_written_are_counted(sqlite_url: str) -> None:
    async with await Store.open(sqlite_url) as store:
        sink = SpanProcessSink(SpanTargets(database_url=sqlite_url), flush_s=60)  # sent by hand below
        sink.start()
        try:
            sink.on_end(_span(1))
            assert await sink.flush() == 1
            first = sink.child_pid
            assert first is not None
            os.kill(first, signal.SIGSTOP)  # the next batch reaches the pipe but is never answered
            sink.on_end(_span(2))
            sink.on_end(_span(3))
            assert await sink.flush(timeout_s=0.2) == 0
            os.kill(first, signal.SIGKILL)
            await asyncio.sleep(0.1)
            sink.on_end(_span(4))
            assert await sink.flush() == 1  # a new child wrote it
            assert sink.child_pid not in (None, first)
        finally:
            await sink.aclose()
        assert sink.dropped == 2 and sink.written == 2
        names = [r.name for r in await SpanStore(store.engine).for_session("s1")]
        assert names == ["span 1", "span 4"]


async def test_a_batch_larger_than_one_of_the_childs_transactions_is_written_in_full(sqlite_url: str) -> None:
    async with await Store.open(sqlite_url) as store:
        sink = SpanProcessSink(SpanTargets(database_url=sqlite_url), flush_s=60)
        sink.start()
        try:
            for span_id in range(1, 301):  # one batch, several of the child's transactions
                sink.on_end(_span(span_id))
            assert await sink.flush() == 300
        finally:
            await sink.aclose()
        assert sink.dropped == 0
        rows = await SpanStore(store.engine).for_session("s1")
        assert [r.name for r in rows] == [f"span {i}" for i in range(1, 301)]


async def test_the_child_ignores_ctrl_c_and_sigterm_and_stops_with_its_parent(sqlite_url: str) -> None:
    async with await Store.open(sqlite_url) as store:
        sink = SpanProcessSink(SpanTargets(database_url=sqlite_url), flush_s=60)
        sink.start()
        try:
            sink.on_end(_span(1))
            assert await sink.flush() == 1  # the child is up and has set its signal handling
            child = sink.child_pid
            assert child is not None
            os.kill(child, signal.SIGINT)  # as a terminal's Ctrl-C, sent to the whole process group
            os.kill(child, signal.SIGTERM)  # as a service manager stopping the unit
            await asyncio.sleep(0.3)
            sink.on_end(_span(2))
            assert await sink.flush() == 1 and sink.child_pid == child  # the same child wrote it
        finally:
            await sink.aclose()
        assert sink.dropped == 0 and sink.child_pid is None
        assert len(await SpanStore(store.engine).for_session("s1")) == 2


async def test_start_tracing_uses_a_child_process_only_when_given_a_database_and_allowed(sqlite_url: str) -> None:
    async with await Store.open(sqlite_url) as store:
        on = start_tracing(TracingSettings(), store.engine, cleanup=False, span_process_url=sqlite_url)
        try:
            assert on.process_sink is not None and on.store_sink is None and on.otlp is None
        finally:
            await on.aclose()
        off = start_tracing(
            TracingSettings(export_process=False), store.engine, cleanup=False, span_process_url=sqlite_url
        )
        try:
            assert off.process_sink is None and off.store_sink is not None
        finally:
            await off.aclose()


async def test_the_otlp_export_goes_through_a_span_process_while_the_span_store_stays_in_this_one(
    sqlite_url: str,
) -> None:
    async with await Store.open(sqlite_url) as store:
        with otlp_receiver() as receiver:
            export = start_tracing(TracingSettings(otlp_endpoint=receiver.url), store.engine, cleanup=False)
            try:
                assert export.process_sink is not None and export.store_sink is not None and export.otlp is None
                assert export.router is not None
                export.router.on_end(_span(1, **{"botfactory.user": "grace@example.com"}))
                await export.flush()
            finally:
                await export.aclose()
            exported = list(receiver.spans)
        rows = await SpanStore(store.engine).for_session("s1")
    assert [s.name for s in exported] == ["span 1"] and exported[0].attributes["botfactory.user"] == "***"
    assert [r.name for r in rows] == ["span 1"] and rows[0].attributes["botfactory.user"] == "***"
    assert export.process_sink.written == 1 and export.store_sink.written == 1


@pytest.mark.parametrize(
    ("role", "memory", "expected"),
    [("worker", False, True), ("all", False, False), ("serve", False, False), ("worker", True, False)],
)
async def test_on_sqlite_only_a_worker_with_a_database_file_uses_a_span_process(
    sqlite_url: str, role: str, memory: bool, expected: bool
) -> None:
    url = "sqlite://" if memory else sqlite_url
    settings = Settings.load(database_url=url)
    async with await Store.open(url) as store:
        assert (_span_process_url(settings, store, role) is not None) is expected  # type: ignore[arg-type]


@pytest.mark.postgres
@pytest.mark.parametrize("role", ["all", "serve", "worker"])
async def test_on_postgresql_every_process_uses_a_span_process(postgres_url: str, role: str) -> None:
    settings = Settings.load(database_url=postgres_url)
    async with await Store.open(postgres_url) as store:
        assert _span_process_url(settings, store, role) == postgres_url  # type: ignore[arg-type]
