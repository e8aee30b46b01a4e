"""Reading spend back: tokens and cost per bot, user or model alias, per UTC day.

The counters are the ``usage_counters`` rows every model call adds to (see ``RuntimeStore.record_step``); this
module only reads them, for ``botfactory costs``, ``GET /v1/costs`` and the console's charts. It also reads the
few figures ``GET /metrics`` computes from the database when it is scraped: the inbox backlog and the pending
approvals per bot.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from botfactory.store.engine import reading
from botfactory.store.schema import approvals, inbox, usage_counters

__all__ = ["COST_SCOPES", "CostRow", "CostScope", "CostStore", "day_before"]

CostScope = Literal["bot", "user", "model"]
COST_SCOPES: Final[tuple[str, ...]] = get_args(CostScope)


@dataclass(frozen=True, kw_only=True)
class CostRow:
    """Tokens and cost of one bot, user or model alias on one UTC day (``YYYY-MM-DD``)."""

    day: str
    key: str
    tokens: int
    cost: float

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data."""
        return {"day": self.day, "key": self.key, "tokens": self.tokens, "cost": self.cost}


def day_before(today: str, days: int) -> str:
    """The UTC day ``days`` before ``today`` (both ``YYYY-MM-DD``); ``days=0`` is today."""
    return (dt.date.fromisoformat(today) - dt.timedelta(days=days)).isoformat()


class CostStore:
    """Reads the daily usage counters.

    Args:
        engine: An async engine whose schema is at revision 0002 or later.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def by_day(self, scope: CostScope, *, since_day: str, key: str | None = None) -> list[CostRow]:
        """Every counter of ``scope`` from ``since_day`` (inclusive) on, by day then key.

        Args:
            scope: ``bot``, ``user`` or ``model`` (model aliases are counted from revision 0007 on).
            since_day: The first UTC day to include, ``YYYY-MM-DD``.
            key: Only this bot, user or model alias.
        """
        statement = (
            sa.select(usage_counters.c.day, usage_counters.c.key, usage_counters.c.tokens, usage_counters.c.cost)
            .where(usage_counters.c.scope == scope, usage_counters.c.day >= since_day, usage_counters.c.day != "")
            .order_by(usage_counters.c.day, usage_counters.c.key)
        )
        if key is not None:
            statement = statement.where(usage_counters.c.key == key)
        async with reading(self._engine, "reading the usage counters") as connection:
            rows = (await connection.execute(statement)).all()
        return [CostRow(day=str(d), key=str(k), tokens=int(t), cost=float(c)) for d, k, t, c in rows]

    async def totals(self, scope: CostScope, *, since_day: str) -> list[CostRow]:
        """Tokens and cost per key of ``scope`` summed from ``since_day`` on, most expensive first (``day`` is
        ``since_day``)."""
        rows = await self.by_day(scope, since_day=since_day)
        summed: dict[str, list[float]] = {}
        for row in rows:
            total = summed.setdefault(row.key, [0, 0.0])
            total[0] += row.tokens
            total[1] += row.cost
        ordered = sorted(summed.items(), key=lambda item: (-item[1][1], -item[1][0], item[0]))
        return [CostRow(day=since_day, key=k, tokens=int(t), cost=float(c)) for k, (t, c) in ordered]

    async def inbox_backlog(self) -> dict[str, tuple[int, float]]:
        """Messages no worker has taken yet, per bot: ``bot -> (count, enqueued_at of the oldest)``.

        Bots with nothing waiting are left out.
        """
        statement = (
            sa.select(inbox.c.bot, sa.func.count(), sa.func.min(inbox.c.enqueued_at))
            .where(inbox.c.status == "pending")
            .group_by(inbox.c.bot)
        )
        async with reading(self._engine, "reading the inbox backlog") as connection:
            rows = (await connection.execute(statement)).all()
        return {str(bot): (int(count), float(oldest)) for bot, count, oldest in rows}

    async def pending_approvals(self, *, now: float) -> dict[str, int]:
        """Approval requests still waiting for a decision (not yet expired at ``now``), per bot."""
        statement = (
            sa.select(approvals.c.bot, sa.func.count())
            .where(approvals.c.status == "pending", approvals.c.expires_at > now)
            .group_by(approvals.c.bot)
        )
        async with reading(self._engine, "reading the pending approvals") as connection:
            rows = (await connection.execute(statement)).all()
        return {str(bot): int(count) for bot, count in rows}
