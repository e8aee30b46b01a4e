"""What the alert rules measure, read from the tables every worker writes: first-token times, spend, tool outcomes
and policy denials. Each read is one query over a recent window (or a few days of counters), indexed where the
schema allows it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from botfactory.store.engine import reading
from botfactory.store.schema import audit_log, inbox, steps, turns, usage_counters

__all__ = ["FAILED_OUTCOMES", "RAN_OUTCOMES", "AlertSignals", "FirstToken", "ToolCalls"]

FAILED_OUTCOMES: Final = frozenset({"error", "timeout", "unavailable", "credential_error", "credential_rejected"})
"""Audit outcomes that count as the tool failing."""
RAN_OUTCOMES: Final = FAILED_OUTCOMES | {"ok"}
"""Audit outcomes of calls that reached the tool (refusals before it: denied, rejected, rate limited, throttled,
waiting for approval, are not the tool's fault and are not counted)."""
_INBOX_STATUSES: Final = ("pending", "running", "done", "dead", "cancelled")
"""Every inbox status: naming them all lets the (status, enqueued_at) index serve a range on enqueued_at."""


@dataclass(frozen=True, kw_only=True)
class FirstToken:
    """One turn's time to first token.

    Attributes:
        seconds: From its input message's enqueue to the end of its first model call; for a running turn with no
            model answer yet, the time it has waited so far.
        waiting: The turn has no model answer yet (``seconds`` is a lower bound).
    """

    bot: str
    turn_id: str
    seconds: float
    waiting: bool


@dataclass(frozen=True, kw_only=True)
class ToolCalls:
    """A tool's calls that reached it within a window, and how many of them failed."""

    tool: str
    calls: int
    failed: int

    @property
    def error_rate(self) -> float:
        """Failed calls over calls (0 without calls)."""
        return self.failed / self.calls if self.calls else 0.0


class AlertSignals:
    """Reads the measurements behind alert rules.

    Args:
        engine: An async engine whose schema is at revision 0007 or later.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def first_tokens(self, *, since: float, now: float, bot: str | None = None) -> list[FirstToken]:
        """Time to first token of every turn whose input message was enqueued at or after ``since``.

        Turns that ended without a model call (an external agent, a cancelled turn) are left out.
        """
        first_model = (
            sa.select(sa.func.min(steps.c.finished_at))
            .where(steps.c.turn_id == turns.c.id, steps.c.kind == "model", steps.c.finished_at.is_not(None))
            .scalar_subquery()
        )
        statement = (
            sa.select(turns.c.id, turns.c.bot, turns.c.status, inbox.c.enqueued_at, first_model.label("first"))
            .select_from(inbox.join(turns, turns.c.id == inbox.c.turn_id))
            .where(
                inbox.c.status.in_(_INBOX_STATUSES),
                inbox.c.enqueued_at >= since,
                turns.c.input_message_id == inbox.c.message_id,
            )
        )
        if bot is not None:
            statement = statement.where(turns.c.bot == bot)
        async with reading(self._engine, "reading first-token times") as connection:
            rows = (await connection.execute(statement)).all()
        found: list[FirstToken] = []
        for turn_id, turn_bot, status, enqueued_at, first in rows:
            if first is not None:
                found.append(
                    FirstToken(bot=turn_bot, turn_id=turn_id, seconds=max(0.0, first - enqueued_at), waiting=False)
                )
            elif status == "running":
                found.append(
                    FirstToken(bot=turn_bot, turn_id=turn_id, seconds=max(0.0, now - enqueued_at), waiting=True)
                )
        return found

    async def bot_spend(self, *, since_day: str, bot: str | None = None) -> dict[str, dict[str, float]]:
        """Spend per bot per UTC day from ``since_day`` on: ``{bot: {day: cost}}``."""
        statement = sa.select(usage_counters.c.key, usage_counters.c.day, usage_counters.c.cost).where(
            usage_counters.c.scope == "bot", usage_counters.c.day >= since_day, usage_counters.c.day != ""
        )
        if bot is not None:
            statement = statement.where(usage_counters.c.key == bot)
        async with reading(self._engine, "reading spend per bot") as connection:
            rows = (await connection.execute(statement)).all()
        spend: dict[str, dict[str, float]] = {}
        for key, day, cost in rows:
            spend.setdefault(str(key), {})[str(day)] = float(cost)
        return spend

    async def tool_calls(self, *, since: float, tool: str | None = None) -> list[ToolCalls]:
        """Per tool, the calls at or after ``since`` that reached it and how many failed."""
        failed = sa.func.sum(sa.case((audit_log.c.outcome.in_(FAILED_OUTCOMES), 1), else_=0))
        statement = (
            sa.select(audit_log.c.tool, sa.func.count(), failed)
            .where(audit_log.c.at >= since, audit_log.c.outcome.in_(RAN_OUTCOMES))
            .group_by(audit_log.c.tool)
        )
        if tool is not None:
            statement = statement.where(audit_log.c.tool == tool)
        async with reading(self._engine, "reading tool outcomes") as connection:
            rows = (await connection.execute(statement)).all()
        return [ToolCalls(tool=str(name), calls=int(calls), failed=int(bad or 0)) for name, calls, bad in rows]

    async def policy_denials(
        self, *, since: float, bots: Collection[str] | None = None
    ) -> dict[tuple[str, str], list[float]]:
        """Per ``(session, bot)``, when its tool calls were denied by policy at or after ``since`` (oldest first)."""
        statement = (
            sa.select(audit_log.c.session_id, audit_log.c.bot, audit_log.c.at)
            .where(audit_log.c.at >= since, audit_log.c.decision == "deny", audit_log.c.session_id.is_not(None))
            .order_by(audit_log.c.at)
        )
        if bots is not None:
            statement = statement.where(audit_log.c.bot.in_(list(bots)))
        async with reading(self._engine, "reading policy denials") as connection:
            rows = (await connection.execute(statement)).all()
        denials: dict[tuple[str, str], list[float]] = {}
        for session_id, bot, at in rows:
            denials.setdefault((str(session_id), str(bot)), []).append(float(at))
        return denials
