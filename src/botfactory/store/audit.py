"""Persistence of the audit log: one row per tool call the gateway decided, the same on SQLite and PostgreSQL.

Rows are written by :class:`botfactory.observability.AuditLog` (batched, off the call's path) and read back by
``botfactory audit list`` and ``GET /v1/audit``, newest first, filtered and paged by a cursor.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from botfactory.store.engine import reading, writing
from botfactory.store.schema import audit_log

__all__ = ["AuditQuery", "AuditRecord", "AuditStore"]

MAX_PAGE = 1000


@dataclass(frozen=True, kw_only=True)
class AuditRecord:
    """One audited tool call.

    Attributes:
        id: Time-ordered id (UUIDv7); also the paging cursor.
        at: When the call was decided (epoch seconds).
        principal: The user the call was made for, if known.
        agent_path: The calling agent, e.g. ``support/github``.
        arguments: The call's arguments with secrets and sensitive fields masked.
        decision: ``allow``, ``deny``, ``ask`` (a policy asked for an approval), ``would-deny`` (log-only mode let it
            through) or ``invalid`` (the arguments did not match the tool's schema, so no policy was asked).
        reasons: Ids of the policies that determined the decision.
        approval: ``pending``, ``approved``, ``denied`` or ``expired`` when a person was asked (``unavailable``:
            no approval channel); else ``None``.
        outcome: ``ok``, ``error``, ``denied``, ``rejected``, ``rate_limited``, ``timeout``, ``unavailable``,
            ``credential_error``, ``credential_rejected`` (the service refused the credential), ``throttled`` or
            ``approval_pending`` (the turn paused for a decision).
        error: The error the model was shown, when the call did not succeed.
        duration_ms: From the gateway's first check to the end of the call.
    """

    id: str
    at: float
    principal: str | None
    bot: str
    agent_path: str
    tool: str
    arguments: dict[str, Any]
    decision: str
    reasons: tuple[str, ...]
    approval: str | None
    outcome: str
    error: str | None
    duration_ms: float
    session_id: str | None
    turn_id: str | None
    position: int | None
    trace_id: str | None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data."""
        return {
            "id": self.id,
            "at": self.at,
            "principal": self.principal,
            "bot": self.bot,
            "agent_path": self.agent_path,
            "tool": self.tool,
            "arguments": self.arguments,
            "decision": self.decision,
            "reasons": list(self.reasons),
            "approval": self.approval,
            "outcome": self.outcome,
            "error": self.error,
            "duration_ms": self.duration_ms,
            "session_id": self.session_id,
            "turn_id": self.turn_id,
            "position": self.position,
            "trace_id": self.trace_id,
        }


@dataclass(frozen=True, kw_only=True)
class AuditQuery:
    """Which audit rows to list; every given field must match.

    Attributes:
        since: Only rows at or after this time (epoch seconds).
        before: Only rows older than this id (the ``id`` of the last row of the previous page).
        limit: At most this many rows, newest first (1 to 1000).
    """

    tool: str | None = None
    principal: str | None = None
    bot: str | None = None
    session_id: str | None = None
    decision: str | None = None
    outcome: str | None = None
    since: float | None = None
    before: str | None = None
    limit: int = 100


def _record(row: sa.RowMapping) -> AuditRecord:
    return AuditRecord(
        id=str(row["id"]),
        at=float(row["at"]),
        principal=row["principal"],
        bot=str(row["bot"]),
        agent_path=str(row["agent_path"]),
        tool=str(row["tool"]),
        arguments=dict(row["arguments"] or {}),
        decision=str(row["decision"]),
        reasons=tuple(row["reasons"] or ()),
        approval=row["approval"],
        outcome=str(row["outcome"]),
        error=row["error"],
        duration_ms=float(row["duration_ms"]),
        session_id=row["session_id"],
        turn_id=row["turn_id"],
        position=row["position"],
        trace_id=row["trace_id"],
    )


class AuditStore:
    """Reads and writes the ``audit_log`` table.

    Args:
        engine: An async engine whose schema is at revision 0005 or later.
        clock: Current time in epoch seconds (for :meth:`purge`); tests inject one.
    """

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._clock = clock

    async def insert(self, records: Sequence[AuditRecord]) -> None:
        """Write audit rows in one transaction.

        Raises:
            StoreError: The database failed; nothing was written.
        """
        if not records:
            return
        async with writing(self._engine, "writing the audit log") as connection:
            await connection.run_sync(self.insert_on, records)

    @staticmethod
    def insert_on(connection: sa.Connection, records: Sequence[AuditRecord]) -> None:
        """Write audit rows on a synchronous connection, in its transaction (a runtime writer's batch)."""
        if records:
            connection.execute(audit_log.insert(), [{**r.to_dict(), "reasons": list(r.reasons)} for r in records])

    async def list(self, query: AuditQuery) -> list[AuditRecord]:
        """The rows matching ``query``, newest first."""
        statement = sa.select(audit_log).order_by(audit_log.c.id.desc()).limit(max(1, min(query.limit, MAX_PAGE)))
        equal = {
            audit_log.c.tool: query.tool,
            audit_log.c.principal: query.principal,
            audit_log.c.bot: query.bot,
            audit_log.c.session_id: query.session_id,
            audit_log.c.decision: query.decision,
            audit_log.c.outcome: query.outcome,
        }
        for column, value in equal.items():
            if value is not None:
                statement = statement.where(column == value)
        if query.since is not None:
            statement = statement.where(audit_log.c.at >= query.since)
        if query.before is not None:
            statement = statement.where(audit_log.c.id < query.before)
        async with reading(self._engine, "reading the audit log") as connection:
            rows = (await connection.execute(statement)).mappings().all()
        return [_record(row) for row in rows]

    async def purge(self, *, older_than_s: float) -> int:
        """Delete rows older than ``older_than_s`` seconds; how many were deleted."""
        cutoff = self._clock() - older_than_s
        async with writing(self._engine, "purging the audit log") as connection:
            result = await connection.execute(audit_log.delete().where(audit_log.c.at < cutoff))
        return result.rowcount
