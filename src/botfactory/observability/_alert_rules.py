"""One check per alert rule kind: measure, compare with the rule, raise or resolve (and throttle or quarantine).

- ``ttft``: p95 (max below 20 turns) time to first token per bot over ``window_s``, above ``threshold_s``.
- ``spend``: a bot's spend today over ``daily_budget``, or over ``baseline_factor`` x its average day of the last 7.
- ``tool_errors``: a tool's failed share of calls over ``window_s`` at or above ``error_rate`` (``min_calls`` at
  least): alert and throttle the tool for ``throttle_s``. Calls made during a throttle are refused before they reach
  the tool, so once it ends only calls made since count.
- ``safety``: a session with ``max_denials`` policy denials within ``window_s`` is quarantined and alerted.
  Denials before the session's last release do not count again.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from botfactory.config import AlertRule
from botfactory.errors import SessionNotFoundError
from botfactory.store import AlertRecord, AlertSignals, NewAlert, ThrottleStore, ToolCalls, day_before

if TYPE_CHECKING:
    from collections.abc import Callable

    from botfactory.observability.alerts import AlertNotifier, Quarantine

__all__ = ["RuleChecks", "first_token_statistic", "utc_day"]

_P95_MIN_SAMPLES: Final = 20
_BASELINE_DAYS: Final = 7


def utc_day(epoch_s: float) -> str:
    """The UTC date of an instant (``YYYY-MM-DD``), as usage counters are keyed."""
    return dt.datetime.fromtimestamp(epoch_s, tz=dt.UTC).strftime("%Y-%m-%d")


def first_token_statistic(seconds: list[float]) -> tuple[float, str]:
    """The p95 of ``seconds`` (nearest rank), or their max when there are fewer than 20; and which it is."""
    ordered = sorted(seconds)
    if len(ordered) < _P95_MIN_SAMPLES:
        return ordered[-1], "max"
    return ordered[math.ceil(0.95 * len(ordered)) - 1], "p95"


def _duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


@dataclass(kw_only=True)
class RuleChecks:
    """The checks, sharing the evaluator's measurements and outlets."""

    signals: AlertSignals
    notifier: AlertNotifier
    throttles: ThrottleStore
    quarantine: Quarantine | None
    on_throttle: Callable[[], None] | None

    async def check(self, rule: AlertRule, now: float) -> list[AlertRecord]:
        """Evaluate ``rule`` at ``now``; the alerts that are new."""
        if rule.kind == "ttft":
            return await self._ttft(rule, now)
        if rule.kind == "spend":
            return await self._spend(rule, now)
        if rule.kind == "tool_errors":
            return await self._tool_errors(rule, now)
        return await self._safety(rule, now)

    async def _settle(
        self, rule: AlertRule, firing: dict[str, NewAlert], *, keep: AbstractSet[str] = frozenset()
    ) -> list[AlertRecord]:
        """Raise every alert in ``firing``; resolve the rule's open alerts about anything else (but ``keep``)."""
        raised = [record for new in firing.values() if (record := await self.notifier.fire(new)) is not None]
        for subject in await self.notifier.store.open_subjects(rule.name) - firing.keys() - keep:
            await self.notifier.resolve(rule.name, subject)
        return raised

    def _alert(self, rule: AlertRule, subject: str, message: str, **data: object) -> NewAlert:
        return NewAlert(
            rule=rule.name, kind=rule.kind, subject=subject, severity=rule.severity, message=message, data=dict(data)
        )

    async def _ttft(self, rule: AlertRule, now: float) -> list[AlertRecord]:
        assert rule.threshold_s is not None  # the rule's validator
        samples = await self.signals.first_tokens(since=now - rule.window_s, now=now, bot=rule.bot)
        by_bot: dict[str, list[float]] = {}
        for sample in samples:
            by_bot.setdefault(sample.bot, []).append(sample.seconds)
        firing: dict[str, NewAlert] = {}
        for bot, seconds in by_bot.items():
            value, statistic = first_token_statistic(seconds)
            if value > rule.threshold_s:
                firing[bot] = self._alert(
                    rule,
                    bot,
                    f"bot {bot}: time to first token {value:.1f} s ({statistic} of {len(seconds)} turns over the last "
                    f"{_duration(rule.window_s)}) is above {rule.threshold_s:g} s",
                    value_s=round(value, 3),
                    statistic=statistic,
                    turns=len(seconds),
                    threshold_s=rule.threshold_s,
                    window_s=rule.window_s,
                )
        return await self._settle(rule, firing)

    async def _spend(self, rule: AlertRule, now: float) -> list[AlertRecord]:
        today = utc_day(now)
        spend = await self.signals.bot_spend(since_day=day_before(today, _BASELINE_DAYS), bot=rule.bot)
        firing: dict[str, NewAlert] = {}
        for bot, days in spend.items():
            spent = days.get(today, 0.0)
            earlier = [cost for day, cost in days.items() if day != today and cost > 0]
            baseline = sum(earlier) / len(earlier) if earlier else None
            reasons = []
            if rule.daily_budget is not None and spent > rule.daily_budget:
                reasons.append(f"over the daily budget of {rule.daily_budget:g}")
            if rule.baseline_factor is not None and baseline is not None and spent > rule.baseline_factor * baseline:
                reasons.append(
                    f"{spent / baseline:.1f}x its average day of {baseline:.4g} (limit {rule.baseline_factor:g}x)"
                )
            if reasons:
                firing[bot] = self._alert(
                    rule,
                    bot,
                    f"bot {bot}: spend today ({today} UTC) is {spent:.4g}, " + " and ".join(reasons),
                    spent=spent,
                    day=today,
                    daily_budget=rule.daily_budget,
                    baseline=baseline,
                    baseline_factor=rule.baseline_factor,
                )
        return await self._settle(rule, firing)

    async def _tool_errors(self, rule: AlertRule, now: float) -> list[AlertRecord]:
        assert rule.error_rate is not None  # the rule's validator
        since = now - rule.window_s
        known = {record.tool: record for record in await self.throttles.list()}
        throttled = {tool for tool, record in known.items() if record.until > now}
        measured = {stats.tool: stats for stats in await self.signals.tool_calls(since=since, tool=rule.tool)}
        for tool, record in known.items():
            if tool in measured and since < record.until <= now:  # only calls made since the throttle ended
                fresh = await self.signals.tool_calls(since=record.until, tool=tool)
                measured[tool] = fresh[0] if fresh else ToolCalls(tool=tool, calls=0, failed=0)
        firing: dict[str, NewAlert] = {}
        for tool, stats in measured.items():
            if tool in throttled or stats.calls < rule.min_calls or stats.error_rate < rule.error_rate:
                continue
            reason = (
                f"its error rate was {stats.error_rate:.0%} ({stats.failed} of {stats.calls} calls failed) over the "
                f"last {_duration(rule.window_s)}"
            )
            throttle = f"; throttled for {_duration(rule.throttle_s)}" if rule.throttle_s > 0 else ""
            firing[tool] = self._alert(
                rule,
                tool,
                f"tool {tool}: {reason}, at or above {rule.error_rate:.0%}{throttle}",
                error_rate=round(stats.error_rate, 4),
                failed=stats.failed,
                calls=stats.calls,
                threshold=rule.error_rate,
                window_s=rule.window_s,
                throttled_until=now + rule.throttle_s if rule.throttle_s > 0 else None,
            )
            if rule.throttle_s > 0:
                await self.throttles.throttle(tool, now + rule.throttle_s, reason)
                if self.on_throttle is not None:
                    self.on_throttle()
        return await self._settle(rule, firing, keep=throttled)

    async def _safety(self, rule: AlertRule, now: float) -> list[AlertRecord]:
        denials = await self.signals.policy_denials(
            since=now - rule.window_s, bots=[rule.bot] if rule.bot is not None else None
        )
        open_now = await self.notifier.store.open_subjects(rule.name)
        raised: list[AlertRecord] = []
        for (session_id, bot), times in denials.items():
            if len(times) < rule.max_denials or session_id in open_now:
                continue
            released_at = await self.notifier.store.last_resolved_at(rule.name, session_id)
            counted = [at for at in times if released_at is None or at > released_at]
            if len(counted) < rule.max_denials:
                continue
            quarantined = False
            if self.quarantine is not None:
                try:
                    quarantined = await self.quarantine(session_id)
                except SessionNotFoundError:
                    continue
            action = "quarantined" if self.quarantine is not None else "flagged (no runtime here to quarantine it)"
            new = self._alert(
                rule,
                session_id,
                f"session {session_id} of bot {bot} {action}: {len(counted)} tool calls denied by policy within "
                f"{_duration(rule.window_s)} (limit {rule.max_denials}); release it with "
                f"`botfactory sessions release {session_id}`",
                bot=bot,
                source="policy_denials",
                denials=len(counted),
                max_denials=rule.max_denials,
                window_s=rule.window_s,
                quarantined=quarantined,
            )
            record = await self.notifier.fire(new)
            if record is not None:
                raised.append(record)
        return raised
