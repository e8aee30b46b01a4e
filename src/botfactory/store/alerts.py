"""Alerts and tool throttles in the store, the same on SQLite and PostgreSQL.

An alert is open until its condition clears or an operator resolves it; at most one alert is open per rule and
subject (the bot, tool or session it is about), so a condition that holds for an hour is one alert, not one per
evaluation. Raising is atomic across processes (every worker evaluates the rules): only the process whose raise
inserted the row learns that the alert is new, and only it notifies. A throttle refuses a tool's calls until a
time; its row stays after it ends so the next evaluation counts only calls made since.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from botfactory.errors import ConflictError, NotFoundError
from botfactory.store.engine import reading, writing
from botfactory.store.ids import new_id
from botfactory.store.schema import alerts, tool_throttles

__all__ = ["AlertRecord", "AlertStatus", "AlertStore", "NewAlert", "ThrottleRecord", "ThrottleStore"]

AlertStatus = Literal["open", "resolved"]
MAX_ALERTS: Final = 1000


@dataclass(frozen=True, kw_only=True)
class NewAlert:
    """What an alert is about, as a rule found it.

    Attributes:
        rule: The rule's name in ``[[alerts.rules]]``.
        kind: ``ttft``, ``spend``, ``tool_errors`` or ``safety``.
        subject: The bot, tool or session it is about.
        message: One line for people: what was measured against what.
        data: The measured value, the threshold and what else explains it.
    """

    rule: str
    kind: str
    subject: str
    severity: str
    message: str
    data: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class AlertRecord:
    """One stored alert."""

    id: str
    rule: str
    kind: str
    subject: str
    severity: str
    message: str
    data: dict[str, Any]
    status: AlertStatus
    created_at: float
    resolved_at: float | None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data."""
        return {
            "id": self.id,
            "rule": self.rule,
            "kind": self.kind,
            "subject": self.subject,
            "severity": self.severity,
            "message": self.message,
            "data": self.data,
            "status": self.status,
            "created_at": self.created_at,
            "resolved_at": self.resolved_at,
        }


def _alert(row: Mapping[Any, Any]) -> AlertRecord:
    return AlertRecord(
        id=str(row["id"]),
        rule=str(row["rule"]),
        kind=str(row["kind"]),
        subject=str(row["subject"]),
        severity=str(row["severity"]),
        message=str(row["message"]),
        data=dict(row["data"] or {}),
        status=row["status"],
        created_at=float(row["created_at"]),
        resolved_at=row["resolved_at"],
    )


def _lock_key(rule: str, subject: str) -> int:
    digest = hashlib.sha256(f"alert\0{rule}\0{subject}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class AlertStore:
    """Reads and writes the ``alerts`` table.

    Args:
        engine: An async engine whose schema is at revision 0007 or later.
        clock: Current time in epoch seconds; tests inject one.
    """

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._clock = clock

    async def raise_alert(self, new: NewAlert) -> tuple[AlertRecord, bool]:
        """Open an alert unless one is open for its rule and subject already.

        Returns:
            The open alert, and whether this call created it (only then should anyone be notified).
        """
        async with writing(self._engine, "raising an alert") as connection:
            await _serialize(connection, new.rule, new.subject)
            existing = await self._open_one(connection, new.rule, new.subject)
            if existing is not None:
                return existing, False
            values = {
                "id": new_id(),
                "rule": new.rule,
                "kind": new.kind,
                "subject": new.subject,
                "severity": new.severity,
                "message": new.message,
                "data": new.data,
                "status": "open",
                "created_at": self._clock(),
                "resolved_at": None,
            }
            await connection.execute(alerts.insert().values(**values))
        return _alert(values), True

    @staticmethod
    async def _open_one(connection: AsyncConnection, rule: str, subject: str) -> AlertRecord | None:
        statement = sa.select(alerts).where(
            alerts.c.rule == rule, alerts.c.subject == subject, alerts.c.status == "open"
        )
        row = (await connection.execute(statement.limit(1))).mappings().first()
        return None if row is None else _alert(row)

    async def list(
        self, *, status: AlertStatus | None = None, kind: str | None = None, limit: int = 100
    ) -> list[AlertRecord]:
        """Alerts, newest first; ``status`` and ``kind`` filter, ``None`` takes every one."""
        statement = sa.select(alerts).order_by(alerts.c.created_at.desc(), alerts.c.id.desc())
        if status is not None:
            statement = statement.where(alerts.c.status == status)
        if kind is not None:
            statement = statement.where(alerts.c.kind == kind)
        async with reading(self._engine, "reading alerts") as connection:
            rows = (await connection.execute(statement.limit(max(1, min(limit, MAX_ALERTS))))).mappings().all()
        return [_alert(row) for row in rows]

    async def get(self, alert_id: str) -> AlertRecord:
        """One alert.

        Raises:
            NotFoundError: no alert has that id.
        """
        async with reading(self._engine, "reading an alert") as connection:
            row = (await connection.execute(sa.select(alerts).where(alerts.c.id == alert_id))).mappings().first()
        if row is None:
            raise NotFoundError(f"no alert {alert_id}; list them with `botfactory alerts list --status all`")
        return _alert(row)

    async def resolve(self, alert_id: str) -> AlertRecord:
        """Mark an open alert resolved (an operator dealt with it).

        Raises:
            NotFoundError: no alert has that id.
            ConflictError: it is resolved already.
        """
        now = self._clock()
        async with writing(self._engine, "resolving an alert") as connection:
            row = (await connection.execute(sa.select(alerts).where(alerts.c.id == alert_id))).mappings().first()
            if row is None:
                raise NotFoundError(f"no alert {alert_id}; list them with `botfactory alerts list --status all`")
            if row["status"] != "open":
                raise ConflictError(f"alert {alert_id} was resolved already")
            await connection.execute(
                sa.update(alerts).where(alerts.c.id == alert_id).values(status="resolved", resolved_at=now)
            )
        return _alert({**row, "status": "resolved", "resolved_at": now})

    async def resolve_open(self, rule: str | None, subject: str, *, kind: str | None = None) -> int:
        """Resolve the open alert of ``rule`` (any rule: ``None``; of ``kind`` if given) about ``subject``; how many
        were resolved."""
        statement = sa.update(alerts).where(alerts.c.subject == subject, alerts.c.status == "open")
        if rule is not None:
            statement = statement.where(alerts.c.rule == rule)
        if kind is not None:
            statement = statement.where(alerts.c.kind == kind)
        async with writing(self._engine, "resolving alerts") as connection:
            result = await connection.execute(statement.values(status="resolved", resolved_at=self._clock()))
        return result.rowcount

    async def open_subjects(self, rule: str) -> set[str]:
        """The subjects ``rule`` has an open alert about."""
        statement = sa.select(alerts.c.subject).where(alerts.c.rule == rule, alerts.c.status == "open")
        async with reading(self._engine, "reading alerts") as connection:
            return {str(subject) for subject in (await connection.execute(statement)).scalars()}

    async def last_resolved_at(self, rule: str, subject: str) -> float | None:
        """When the latest resolved alert of ``rule`` about ``subject`` was resolved, if there is one."""
        statement = sa.select(sa.func.max(alerts.c.resolved_at)).where(
            alerts.c.rule == rule, alerts.c.subject == subject, alerts.c.status == "resolved"
        )
        async with reading(self._engine, "reading alerts") as connection:
            value = (await connection.execute(statement)).scalar()
        return None if value is None else float(value)


async def _serialize(connection: AsyncConnection, rule: str, subject: str) -> None:
    """Make concurrent raises of one rule and subject take turns (SQLite's write lock already does)."""
    if connection.dialect.name == "postgresql":
        await connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_lock_key(rule, subject))))


@dataclass(frozen=True, kw_only=True)
class ThrottleRecord:
    """A tool refused until ``until`` (epoch seconds) for ``reason``."""

    tool: str
    until: float
    reason: str
    created_at: float

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data."""
        return {"tool": self.tool, "until": self.until, "reason": self.reason, "created_at": self.created_at}


class ThrottleStore:
    """Reads and writes the ``tool_throttles`` table.

    Args:
        engine: An async engine whose schema is at revision 0007 or later.
        clock: Current time in epoch seconds; tests inject one.
    """

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._clock = clock

    async def throttle(self, tool: str, until: float, reason: str) -> None:
        """Refuse ``tool`` until ``until``; replaces an earlier throttle of the tool."""
        async with writing(self._engine, "throttling a tool") as connection:
            await connection.execute(tool_throttles.delete().where(tool_throttles.c.tool == tool))
            await connection.execute(
                tool_throttles.insert().values(tool=tool, until=until, reason=reason, created_at=self._clock())
            )

    async def list(self) -> list[ThrottleRecord]:
        """Every throttle, ended ones included, by tool."""
        async with reading(self._engine, "reading tool throttles") as connection:
            rows = (await connection.execute(sa.select(tool_throttles).order_by(tool_throttles.c.tool))).mappings()
            return [
                ThrottleRecord(
                    tool=str(row["tool"]),
                    until=float(row["until"]),
                    reason=str(row["reason"]),
                    created_at=float(row["created_at"]),
                )
                for row in rows
            ]

    async def active(self, now: float | None = None) -> dict[str, float]:
        """The tools throttled at ``now`` (default: the clock's now) and until when."""
        at = self._clock() if now is None else now
        return {record.tool: record.until for record in await self.list() if record.until > at}

    async def release(self, tool: str) -> bool:
        """End the tool's throttle now; whether it had one."""
        async with writing(self._engine, "releasing a tool throttle") as connection:
            result = await connection.execute(tool_throttles.delete().where(tool_throttles.c.tool == tool))
        return result.rowcount > 0
