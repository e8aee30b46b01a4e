"""Persistence of finished spans for the console: one row per span, the same on SQLite and PostgreSQL.

Rows are written in batches by the span store exporter (off every request's path) and read back per session or
per turn to draw a turn's waterfall. Attributes are stored already redacted; the store does not look inside them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from botfactory.store.engine import reading, writing
from botfactory.store.schema import spans

__all__ = ["MAX_SPANS", "SpanRecord", "SpanStore", "TraceSummary"]

MAX_SPANS = 20_000
"""The most spans one read returns (a session page caps its turns well below this)."""


@dataclass(frozen=True, kw_only=True)
class SpanRecord:
    """One finished span.

    Attributes:
        trace_id: 32 lowercase hex digits.
        span_id: 16 lowercase hex digits.
        parent_span_id: The parent's span id, or ``None`` for a trace's root (or a span whose parent is remote).
        kind: ``internal``, ``server``, ``client``, ``producer`` or ``consumer``.
        start_time: Epoch seconds.
        end_time: Epoch seconds.
        status: ``unset``, ``ok`` or ``error``.
        session_id: The span's ``gen_ai.conversation.id``, if it has one.
        turn_id: The span's ``botfactory.turn.id``, if it has one.
        bot: The span's ``botfactory.bot``, if it has one.
        attributes: The span's attributes, redacted.
        events: The span's events (``name``, ``time``, ``attributes``), if any.
    """

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str
    start_time: float
    end_time: float
    status: str = "unset"
    status_message: str | None = None
    session_id: str | None = None
    turn_id: str | None = None
    bot: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] | None = None

    @property
    def duration_ms(self) -> float:
        """How long the span lasted, in milliseconds."""
        return max(0.0, self.end_time - self.start_time) * 1000.0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (also the row to insert)."""
        return {
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "parent_span_id": self.parent_span_id,
            "name": self.name,
            "kind": self.kind,
            "start_time": self.start_time,
            "end_time": self.end_time,
            "status": self.status,
            "status_message": self.status_message,
            "session_id": self.session_id,
            "turn_id": self.turn_id,
            "bot": self.bot,
            "attributes": self.attributes,
            "events": self.events,
        }


def _insert_ignoring_duplicates(dialect: str) -> sa.Insert:
    """``INSERT ... ON CONFLICT DO NOTHING`` on the primary key (a span exported twice is stored once)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert(spans).on_conflict_do_nothing(index_elements=["trace_id", "span_id"])
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(spans).on_conflict_do_nothing(index_elements=["trace_id", "span_id"])


def _record(row: sa.RowMapping) -> SpanRecord:
    return SpanRecord(
        trace_id=str(row["trace_id"]),
        span_id=str(row["span_id"]),
        parent_span_id=row["parent_span_id"],
        name=str(row["name"]),
        kind=str(row["kind"]),
        start_time=float(row["start_time"]),
        end_time=float(row["end_time"]),
        status=str(row["status"]),
        status_message=row["status_message"],
        session_id=row["session_id"],
        turn_id=row["turn_id"],
        bot=row["bot"],
        attributes=dict(row["attributes"] or {}),
        events=list(row["events"]) if row["events"] is not None else None,
    )


class SpanStore:
    """Reads and writes the ``spans`` table.

    Args:
        engine: An async engine whose schema is at revision 0007 or later.
        clock: Current time in epoch seconds (for :meth:`purge`); tests inject one.
    """

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._clock = clock

    async def insert(self, records: Sequence[SpanRecord]) -> None:
        """Write spans in one transaction; a span already stored (same trace and span id) is left as it is.

        Raises:
            StoreError: The database failed; nothing was written.
        """
        if not records:
            return
        async with writing(self._engine, "writing spans") as connection:
            await connection.run_sync(self.insert_on, records)

    @staticmethod
    def insert_on(connection: sa.Connection, records: Sequence[SpanRecord]) -> None:
        """Write spans on a synchronous connection, in its transaction."""
        if records:
            statement = _insert_ignoring_duplicates(connection.dialect.name)
            connection.execute(statement, [r.to_dict() for r in records])

    async def for_session(self, session_id: str, *, since: float | None = None) -> list[SpanRecord]:
        """The session's spans (those carrying its ``gen_ai.conversation.id``), oldest first."""
        statement = sa.select(spans).where(spans.c.session_id == session_id)
        if since is not None:
            statement = statement.where(spans.c.start_time >= since)
        return await self._select(statement.order_by(spans.c.start_time, spans.c.span_id).limit(MAX_SPANS))

    async def for_turn(self, turn_id: str) -> list[SpanRecord]:
        """The turn's spans (those carrying its ``botfactory.turn.id``), oldest first."""
        statement = sa.select(spans).where(spans.c.turn_id == turn_id)
        return await self._select(statement.order_by(spans.c.start_time, spans.c.span_id).limit(MAX_SPANS))

    async def for_trace(self, trace_id: str) -> list[SpanRecord]:
        """Every stored span of one trace (channel, inbox wait, turn, ...), oldest first."""
        statement = sa.select(spans).where(spans.c.trace_id == trace_id)
        return await self._select(statement.order_by(spans.c.start_time, spans.c.span_id).limit(MAX_SPANS))

    async def _select(self, statement: sa.Select[Any]) -> list[SpanRecord]:
        async with reading(self._engine, "reading spans") as connection:
            rows = (await connection.execute(statement)).mappings().all()
        return [_record(row) for row in rows]

    async def purge(self, *, older_than_s: float) -> int:
        """Delete spans that started more than ``older_than_s`` seconds ago; how many were deleted."""
        cutoff = self._clock() - older_than_s
        async with writing(self._engine, "purging spans") as connection:
            result = await connection.execute(spans.delete().where(spans.c.start_time < cutoff))
        return result.rowcount

    async def recent_traces(self, *, limit: int = 50, session_id: str | None = None) -> list[TraceSummary]:
        """The newest traces (optionally of one session): id, first span, start, end and span count."""
        started = sa.func.min(spans.c.start_time)
        statement = (
            sa.select(spans.c.trace_id, started, sa.func.max(spans.c.end_time), sa.func.count())
            .group_by(spans.c.trace_id)
            .order_by(started.desc())
            .limit(max(1, min(limit, 1000)))
        )
        if session_id is not None:
            statement = statement.where(spans.c.session_id == session_id)
        async with reading(self._engine, "reading spans") as connection:
            rows = (await connection.execute(statement)).all()
            roots: dict[str, str] = {}
            if rows:
                candidates = (
                    sa.select(spans.c.trace_id, spans.c.name)
                    .where(spans.c.trace_id.in_([row[0] for row in rows]))
                    # A span without a parent first, then the earliest: the root, or the first span stored here.
                    .order_by(spans.c.parent_span_id.is_not(None), spans.c.start_time)
                )
                for trace_id, name in (await connection.execute(candidates)).all():
                    roots.setdefault(str(trace_id), str(name))
        return [
            TraceSummary(trace_id=str(t), root=roots.get(str(t), "?"), start_time=float(s), end_time=float(e), spans=n)
            for t, s, e, n in rows
        ]


@dataclass(frozen=True, kw_only=True)
class TraceSummary:
    """One stored trace at a glance."""

    trace_id: str
    root: str
    """The name of its root span (or of its earliest span when the root is elsewhere, e.g. a caller's)."""
    start_time: float
    end_time: float
    spans: int

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data."""
        return {
            "trace_id": self.trace_id,
            "root": self.root,
            "start_time": self.start_time,
            "end_time": self.end_time,
            "duration_ms": max(0.0, self.end_time - self.start_time) * 1000.0,
            "spans": self.spans,
        }
