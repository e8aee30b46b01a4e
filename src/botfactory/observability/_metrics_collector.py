"""The gauges ``GET /metrics`` reads from the database when it is scraped: inbox, approvals, budgets.

They describe the whole deployment (every process shares the database), so any process serving ``/metrics``
reports the same values. Prometheus collectors are synchronous, so a scrape first awaits :meth:`refresh`, which
reads the database and keeps the readings, and the collector then yields them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client.core import GaugeMetricFamily, Metric

from botfactory.config import BudgetSettings
from botfactory.store import CostStore

__all__ = ["BudgetsSource", "DatabaseGauges", "GaugeReadings"]

logger = logging.getLogger(__name__)

BudgetsSource = Callable[[], Mapping[str, BudgetSettings]]
"""The bots to report on and the budgets each one runs under (its own, else the settings')."""


@dataclass(frozen=True, kw_only=True)
class GaugeReadings:
    """One scrape's reading of the database.

    Attributes:
        inbox: Per bot: messages waiting for a worker, and the age in seconds of the oldest (0 when none).
        approvals: Per bot: approval requests waiting for a decision.
        tokens_left: Per bot with a daily token budget: tokens left today (never below 0).
        cost_left: Per bot with a daily spend budget: spend left today (never below 0).
    """

    inbox: dict[str, tuple[int, float]] = field(default_factory=dict)
    approvals: dict[str, int] = field(default_factory=dict)
    tokens_left: dict[str, float] = field(default_factory=dict)
    cost_left: dict[str, float] = field(default_factory=dict)


def _utc_day(epoch_s: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(epoch_s))


class DatabaseGauges:
    """A Prometheus collector yielding the last :class:`GaugeReadings` (none until the first refresh).

    Args:
        costs: Reads the counters, the inbox and the approvals.
        budgets: The bots to report on, with their budgets; every bot it names gets a series (0 when idle).
        clock: Epoch seconds, for ages and for which UTC day "today" is.
    """

    def __init__(self, costs: CostStore, budgets: BudgetsSource, *, clock: Callable[[], float] = time.time) -> None:
        self._costs = costs
        self._budgets = budgets
        self._clock = clock
        self.readings = GaugeReadings()

    async def refresh(self) -> GaugeReadings:
        """Read the database now; the next :meth:`collect` yields these readings."""
        now = self._clock()
        budgets = self._budgets()
        backlog = await self._costs.inbox_backlog()
        approvals = await self._costs.pending_approvals(now=now)
        inbox = {bot: (0, 0.0) for bot in budgets}
        inbox.update({bot: (count, max(0.0, now - oldest)) for bot, (count, oldest) in backlog.items()})
        waiting = {bot: 0 for bot in budgets} | approvals
        tokens_left: dict[str, float] = {}
        cost_left: dict[str, float] = {}
        capped = {
            bot: b for bot, b in budgets.items() if b.bot_daily_tokens is not None or b.bot_daily_cost is not None
        }
        if capped:
            today = _utc_day(now)
            used = {row.key: row for row in await self._costs.by_day("bot", since_day=today) if row.day == today}
            for bot, budget in capped.items():
                row = used.get(bot)
                if budget.bot_daily_tokens is not None:
                    tokens_left[bot] = float(max(0, budget.bot_daily_tokens - (row.tokens if row else 0)))
                if budget.bot_daily_cost is not None:
                    cost_left[bot] = max(0.0, budget.bot_daily_cost - (row.cost if row else 0.0))
        self.readings = GaugeReadings(inbox=inbox, approvals=waiting, tokens_left=tokens_left, cost_left=cost_left)
        logger.debug("bots=<%d>, pending=<%d> | metrics gauges read", len(inbox), sum(c for c, _ in inbox.values()))
        return self.readings

    def describe(self) -> Iterable[Metric]:
        """The families this collector yields (so the registry can refuse a clashing name)."""
        return self._families(GaugeReadings())

    def collect(self) -> Iterable[Metric]:
        """The last readings as gauge families."""
        return self._families(self.readings)

    @staticmethod
    def _families(readings: GaugeReadings) -> list[Metric]:
        depth = GaugeMetricFamily(
            "botfactory_inbox_depth", "Messages waiting in the inbox for a worker, by bot.", labels=["bot"]
        )
        age = GaugeMetricFamily(
            "botfactory_inbox_oldest_age_seconds",
            "Age of the oldest message waiting in the inbox, by bot (0 when none waits).",
            labels=["bot"],
        )
        for bot, (count, oldest_s) in sorted(readings.inbox.items()):
            depth.add_metric([bot], count)
            age.add_metric([bot], oldest_s)
        approvals = GaugeMetricFamily(
            "botfactory_approvals_pending", "Approval requests waiting for a decision, by bot.", labels=["bot"]
        )
        for bot, count in sorted(readings.approvals.items()):
            approvals.add_metric([bot], count)
        tokens = GaugeMetricFamily(
            "botfactory_budget_remaining_tokens",
            "Tokens left today in the bot's daily token budget (bots with such a budget only).",
            labels=["bot"],
        )
        for bot, left in sorted(readings.tokens_left.items()):
            tokens.add_metric([bot], left)
        cost = GaugeMetricFamily(
            "botfactory_budget_remaining_cost",
            "Spend left today in the bot's daily spend budget (bots with such a budget only).",
            labels=["bot"],
        )
        for bot, left in sorted(readings.cost_left.items()):
            cost.add_metric([bot], left)
        return [depth, age, approvals, tokens, cost]
