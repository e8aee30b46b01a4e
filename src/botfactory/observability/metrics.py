"""Prometheus metrics of one platform: turns, latency, tokens and cost, tool calls, and gauges read from the store.

A :class:`Metrics` owns its own ``CollectorRegistry`` (never the process-global default one), so several
platforms in one process (tests, embedded use) keep separate counts. The platform creates one and hands it to the
parts that count: the worker (turns, time to first token, model tokens and cost) and the tool gateway (tool calls,
errors, policy denials). ``GET /metrics`` serves :meth:`Metrics.exposition`. Every series is described in
docs/metrics.md.

Counters and histograms count what happened in this process since it started; the database gauges
(:mod:`botfactory.observability._metrics_collector`) describe the whole deployment.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from botfactory.observability._metrics_collector import BudgetsSource, DatabaseGauges, GaugeReadings
from botfactory.store import CostStore

__all__ = ["ANONYMOUS_USER", "OTHER_LABEL", "TOOL_ERROR_OUTCOMES", "Metrics"]

logger = logging.getLogger(__name__)

ANONYMOUS_USER: Final = "anonymous"
"""The ``user`` label of calls made for no known user."""
OTHER_LABEL: Final = "_other"
"""The label value that stands for every value past a label's limit of distinct values."""
TOOL_ERROR_OUTCOMES: Final = frozenset({"error", "timeout", "unavailable", "credential_error", "credential_rejected"})
"""Tool-call outcomes counted as tool errors (refusals by policy, schema or rate limit are not the tool's fault)."""

TURN_BUCKETS: Final = (0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
TTFT_BUCKETS: Final = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0)


class _Bounded:
    """Keeps a label's distinct values under a limit: the first ``limit`` seen pass, later new ones become
    :data:`OTHER_LABEL` (a model naming tools that do not exist, or many users, must not grow the series forever)."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) >= self._limit:
            return OTHER_LABEL
        self._seen.add(value)
        return value


class Metrics:
    """The Prometheus series of one platform.

    Args:
        per_user: Label model tokens and cost with the user id as the channel gave it (``slack:T1:U2``, an API
            caller's id). Turn it off where users are many: the series then have no ``user`` label.
        max_label_values: Distinct values kept per ``user`` and ``tool`` label; later new ones are counted under
            ``_other``.
    """

    def __init__(self, *, per_user: bool = True, max_label_values: int = 1000) -> None:
        self.registry = CollectorRegistry()
        self.per_user = per_user
        self._users = _Bounded(max_label_values)
        self._tools = _Bounded(max_label_values)
        self._gauges: DatabaseGauges | None = None
        registry = self.registry
        self._turns = Counter(
            "botfactory_turns", "Turns finished, by bot and final status.", ["bot", "status"], registry=registry
        )
        self._turn_latency = Histogram(
            "botfactory_turn_latency_seconds",
            "From the turn's first message being queued to the turn finishing, by bot.",
            ["bot"],
            buckets=TURN_BUCKETS,
            registry=registry,
        )
        self._ttft = Histogram(
            "botfactory_time_to_first_token_seconds",
            "From the turn's first message being queued to the turn's first model response, by bot.",
            ["bot"],
            buckets=TTFT_BUCKETS,
            registry=registry,
        )
        user = ["user"] if per_user else []
        self._tokens = Counter(
            "botfactory_model_tokens",
            "Model tokens, by bot, model alias, user (if per-user labels are on) and direction (in, out).",
            ["bot", "model", *user, "direction"],
            registry=registry,
        )
        self._cost = Counter(
            "botfactory_model_cost",
            "Model spend in the price table's currency, by bot, model alias and user (if per-user labels are on).",
            ["bot", "model", *user],
            registry=registry,
        )
        self._tool_calls = Counter(
            "botfactory_tool_calls",
            "Tool calls through the gateway, by tool and outcome.",
            ["tool", "outcome"],
            registry=registry,
        )
        self._tool_errors = Counter(
            "botfactory_tool_errors",
            "Tool calls that failed (error, timeout, unavailable, credentials), by tool.",
            ["tool"],
            registry=registry,
        )
        self._denials = Counter(
            "botfactory_policy_denials",
            "Tool calls denied by policy or for lack of a grant, by tool.",
            ["tool"],
            registry=registry,
        )

    # Counting

    def turn_finished(self, *, bot: str, status: str, latency_s: float | None = None) -> None:
        """A turn ended with ``status`` (``completed``, ``failed``, ``cancelled``, ``interrupted``, ``dead``)."""
        self._turns.labels(bot=bot, status=status).inc()
        if latency_s is not None:
            self._turn_latency.labels(bot=bot).observe(max(0.0, latency_s))

    def first_response(self, *, bot: str, seconds: float) -> None:
        """The turn's first model response arrived ``seconds`` after its first message was queued."""
        self._ttft.labels(bot=bot).observe(max(0.0, seconds))

    def model_call(
        self, *, bot: str, model: str, user_id: str | None, input_tokens: int, output_tokens: int, cost: float
    ) -> None:
        """One model call's tokens and price (a free local model still counts its tokens)."""
        if self.per_user:
            user = self._users(user_id or ANONYMOUS_USER)
            self._tokens.labels(bot=bot, model=model, user=user, direction="in").inc(input_tokens)
            self._tokens.labels(bot=bot, model=model, user=user, direction="out").inc(output_tokens)
            self._cost.labels(bot=bot, model=model, user=user).inc(cost)
            return
        self._tokens.labels(bot=bot, model=model, direction="in").inc(input_tokens)
        self._tokens.labels(bot=bot, model=model, direction="out").inc(output_tokens)
        self._cost.labels(bot=bot, model=model).inc(cost)

    def tool_call(self, *, tool: str, outcome: str, decision: str) -> None:
        """One tool call as the gateway audited it: its outcome and the policy's decision."""
        name = self._tools(tool)
        self._tool_calls.labels(tool=name, outcome=outcome).inc()
        if outcome in TOOL_ERROR_OUTCOMES:
            self._tool_errors.labels(tool=name).inc()
        if decision == "deny":
            self._denials.labels(tool=name).inc()

    # Database gauges and exposition

    def watch_database(
        self, costs: CostStore, budgets: BudgetsSource, *, clock: Callable[[], float] = time.time
    ) -> None:
        """Report the inbox, approvals and budget gauges, read from the database at every scrape.

        Args:
            costs: Reads the counters, inbox and approvals.
            budgets: The bots to report on, with the budgets each runs under.
            clock: Epoch seconds.
        """
        if self._gauges is not None:
            self.registry.unregister(self._gauges)
        self._gauges = DatabaseGauges(costs, budgets, clock=clock)
        self.registry.register(self._gauges)

    async def refresh(self) -> GaugeReadings | None:
        """Read the database gauges now (``None`` without :meth:`watch_database`)."""
        return await self._gauges.refresh() if self._gauges is not None else None

    async def exposition(self) -> tuple[bytes, str]:
        """Every series in the Prometheus text format, database gauges read now: ``(body, content type)``."""
        await self.refresh()
        return generate_latest(self.registry), CONTENT_TYPE_PLAIN_0_0_4
