"""Approvals in the store: one row per tool call that needs a person's decision, keyed by the call.

A request is created once per call (its idempotency key ``turn:position``): a resumed turn that reaches the same
call finds the same row. Deciding it and waking the waiting session happen in one transaction, so a decision is
never recorded without the turn going on, on whichever worker claims the session next.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

import sqlalchemy as sa

from botfactory.errors import ConflictError, NotFoundError
from botfactory.store.ids import new_id
from botfactory.store.schema import approvals, session_queue
from botfactory.store.writer import BatchWriter

__all__ = ["ApprovalRecord", "ApprovalStatus", "ApprovalStore", "NewApproval"]

ApprovalStatus = Literal["pending", "approved", "denied", "expired"]
_OPEN: Final = "pending"


@dataclass(frozen=True, kw_only=True)
class NewApproval:
    """What a request for approval is about."""

    call_key: str
    session_id: str
    turn_id: str
    bot: str
    agent_path: str
    tool: str
    arguments: dict[str, Any]
    requester: str | None
    expires_at: float


@dataclass(frozen=True, kw_only=True)
class ApprovalRecord:
    """A request for approval and, once made, its decision.

    Attributes:
        notice: Where the request was shown (Slack: the app, channel and message ``ts``), to update it later.
    """

    id: str
    call_key: str
    session_id: str
    turn_id: str
    bot: str
    agent_path: str
    tool: str
    arguments: dict[str, Any]
    requester: str | None
    status: ApprovalStatus
    decided_by: str | None
    reason: str | None
    notice: dict[str, Any] | None
    created_at: float
    expires_at: float
    decided_at: float | None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data."""
        return {
            "id": self.id,
            "session_id": self.session_id,
            "turn_id": self.turn_id,
            "bot": self.bot,
            "agent_path": self.agent_path,
            "tool": self.tool,
            "arguments": self.arguments,
            "requester": self.requester,
            "status": self.status,
            "decided_by": self.decided_by,
            "reason": self.reason,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "decided_at": self.decided_at,
        }


def _record(row: sa.RowMapping) -> ApprovalRecord:
    return ApprovalRecord(
        id=str(row["id"]),
        call_key=str(row["call_key"]),
        session_id=str(row["session_id"]),
        turn_id=str(row["turn_id"]),
        bot=str(row["bot"]),
        agent_path=str(row["agent_path"]),
        tool=str(row["tool"]),
        arguments=dict(row["arguments"] or {}),
        requester=row["requester"],
        status=row["status"],
        decided_by=row["decided_by"],
        reason=row["reason"],
        notice=row["notice"],
        created_at=float(row["created_at"]),
        expires_at=float(row["expires_at"]),
        decided_at=row["decided_at"],
    )


class ApprovalStore:
    """Reads and writes approvals through the runtime's batch writer.

    Args:
        writer: The runtime's writer (decisions wake sessions in the same transaction).
        notify: Announces a change on a notification channel (PostgreSQL ``NOTIFY``) when the batch commits.
        inbox_channel: The channel that wakes workers.
    """

    def __init__(
        self,
        writer: BatchWriter,
        *,
        notify: Callable[[str], None],
        inbox_channel: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._writer = writer
        self._notify = notify
        self._inbox_channel = inbox_channel
        self._clock = clock

    async def request(self, new: NewApproval) -> ApprovalRecord:
        """The request for this call: created now, or the one a previous attempt created."""
        return await self._writer.write(lambda connection: self._request(connection, new))

    def _request(self, connection: sa.Connection, new: NewApproval) -> ApprovalRecord:
        existing = self._by_key(connection, new.call_key)
        if existing is not None:
            return existing
        values = {
            "id": new_id(),
            "status": _OPEN,
            "created_at": self._clock(),
            "call_key": new.call_key,
            "session_id": new.session_id,
            "turn_id": new.turn_id,
            "bot": new.bot,
            "agent_path": new.agent_path,
            "tool": new.tool,
            "arguments": new.arguments,
            "requester": new.requester,
            "expires_at": new.expires_at,
        }
        connection.execute(approvals.insert().values(**values))
        found = self._by_key(connection, new.call_key)
        assert found is not None
        return found

    @staticmethod
    def _by_key(connection: sa.Connection, call_key: str) -> ApprovalRecord | None:
        row = connection.execute(sa.select(approvals).where(approvals.c.call_key == call_key)).mappings().first()
        return None if row is None else _record(row)

    async def get(self, approval_id: str) -> ApprovalRecord:
        """One request.

        Raises:
            NotFoundError: no request has that id.
        """
        row = await self._writer.read(
            lambda connection: (
                connection.execute(sa.select(approvals).where(approvals.c.id == approval_id)).mappings().first()
            )
        )
        if row is None:
            raise NotFoundError(f"no approval request {approval_id}; list them with `botfactory approvals list`")
        return _record(row)

    async def list(
        self, *, status: ApprovalStatus | None = None, bot: str | None = None, limit: int = 100
    ) -> list[ApprovalRecord]:
        """Requests, newest first."""
        query = sa.select(approvals).order_by(approvals.c.id.desc()).limit(limit)
        if status is not None:
            query = query.where(approvals.c.status == status)
        if bot is not None:
            query = query.where(approvals.c.bot == bot)
        rows = await self._writer.read(lambda connection: connection.execute(query).mappings().all())
        return [_record(row) for row in rows]

    async def decide(self, approval_id: str, *, approve: bool, by: str, reason: str | None = None) -> ApprovalRecord:
        """Approve or deny a pending request and wake its session, in one transaction.

        Raises:
            NotFoundError: no request has that id.
            ConflictError: it was decided already, or it expired.
        """
        return await self._writer.write(lambda connection: self._decide(connection, approval_id, approve, by, reason))

    def _decide(
        self, connection: sa.Connection, approval_id: str, approve: bool, by: str, reason: str | None
    ) -> ApprovalRecord:
        now = self._clock()
        row = connection.execute(sa.select(approvals).where(approvals.c.id == approval_id)).mappings().first()
        if row is None:
            raise NotFoundError(f"no approval request {approval_id}; list them with `botfactory approvals list`")
        current = _record(row)
        if current.status != _OPEN:
            who = f" by {current.decided_by}" if current.decided_by else ""
            raise ConflictError(f"approval request {approval_id} is already {current.status}{who}")
        if now >= current.expires_at:
            self._close(connection, current, "expired", by=None, reason="nobody decided in time", now=now)
            raise ConflictError(f"approval request {approval_id} expired before it was decided")
        status: ApprovalStatus = "approved" if approve else "denied"
        return self._close(connection, current, status, by=by, reason=reason, now=now)

    async def expire(self, approval_id: str) -> ApprovalRecord:
        """Mark a pending request whose time is up as expired; returns it as stored (it may have been decided)."""
        return await self._writer.write(lambda connection: self._expire(connection, approval_id))

    def _expire(self, connection: sa.Connection, approval_id: str) -> ApprovalRecord:
        row = connection.execute(sa.select(approvals).where(approvals.c.id == approval_id)).mappings().one()
        current = _record(row)
        if current.status != _OPEN:
            return current
        return self._close(connection, current, "expired", by=None, reason="nobody decided in time", now=self._clock())

    def _close(
        self,
        connection: sa.Connection,
        current: ApprovalRecord,
        status: ApprovalStatus,
        *,
        by: str | None,
        reason: str | None,
        now: float,
    ) -> ApprovalRecord:
        connection.execute(
            sa.update(approvals)
            .where(approvals.c.id == current.id, approvals.c.status == _OPEN)
            .values(status=status, decided_by=by, reason=reason, decided_at=now)
        )
        # Wake the session now; a worker holding it (a spurious resume) keeps its lease and re-checks anyway.
        connection.execute(
            sa.update(session_queue)
            .where(session_queue.c.session_id == current.session_id, session_queue.c.lease_token.is_(None))
            .values(ready_at=now, updated_at=now)
        )
        self._notify(self._inbox_channel)
        return ApprovalRecord(
            **{**current.__dict__, "status": status, "decided_by": by, "reason": reason, "decided_at": now}
        )

    async def set_notice(self, approval_id: str, notice: dict[str, Any]) -> None:
        """Remember where the request was shown."""
        await self._writer.write(
            lambda connection: connection.execute(
                sa.update(approvals).where(approvals.c.id == approval_id).values(notice=notice)
            )
        )
