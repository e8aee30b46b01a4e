"""Alerts: where a new alert goes (log, store, webhook), the gateway's view of throttled tools, and the evaluator
that checks ``[[alerts.rules]]`` every ``interval_s`` on the database, so it sees every worker's turns and calls.

Each rule kind is one check in :mod:`botfactory.observability._alert_rules`; see docs/alerts.md for what each
measures. Every worker process runs an evaluator; raising an alert is atomic in the store, so a condition seen by
several workers at once is still one alert and one webhook POST.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Final
from urllib.parse import urlsplit

import httpx

from botfactory.config import AlertRule, AlertSettings
from botfactory.observability._alert_rules import RuleChecks
from botfactory.store import AlertRecord, AlertSignals, AlertStore, NewAlert, ThrottleRecord, ThrottleStore

__all__ = ["AlertEvaluator", "AlertNotifier", "Quarantine", "ThrottleCache", "safety_rule_for", "throttled_message"]

logger = logging.getLogger(__name__)

Quarantine = Callable[[str], Awaitable[bool]]
"""Quarantines a session by id; whether its status changed (``Runtime.quarantine_session``)."""
_LOOPBACK: Final = frozenset({"127.0.0.1", "localhost", "::1"})


class AlertNotifier:
    """Raises alerts: stores each, and for a new one logs a WARNING and POSTs it to the webhook, if any.

    Args:
        store: Where alerts are kept (the console and ``botfactory alerts list`` read them there).
        webhook_url: Gets ``{"text": ..., "alert": {...}}`` for every new alert (a Slack incoming webhook works).
        timeout_s: How long one POST may take.
        http: The client to POST with (tests pass one); default: one made per POST.
    """

    def __init__(
        self,
        store: AlertStore,
        *,
        webhook_url: str | None = None,
        timeout_s: float = 5.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.store = store
        self._webhook_url = webhook_url
        self._timeout_s = timeout_s
        self._http = http
        self.webhook_failures = 0

    @classmethod
    def from_settings(cls, settings: AlertSettings, store: AlertStore) -> AlertNotifier:
        """The notifier ``[alerts]`` describes."""
        return cls(store, webhook_url=settings.webhook_url, timeout_s=settings.webhook_timeout_s)

    async def fire(self, new: NewAlert) -> AlertRecord | None:
        """Raise ``new``; the stored alert when it is new, ``None`` when one was open already (nobody is told)."""
        record, created = await self.store.raise_alert(new)
        if not created:
            return None
        logger.warning(
            "alert_id=<%s>, rule=<%s>, kind=<%s>, subject=<%s>, severity=<%s> | alert: %s",
            record.id,
            record.rule,
            record.kind,
            record.subject,
            record.severity,
            record.message,
        )
        await self._post(record)
        return record

    async def resolve(self, rule: str, subject: str) -> bool:
        """Resolve the open alert of ``rule`` about ``subject``, if there is one (its condition cleared)."""
        resolved = await self.store.resolve_open(rule, subject) > 0
        if resolved:
            logger.info("rule=<%s>, subject=<%s> | alert resolved: the condition cleared", rule, subject)
        return resolved

    async def _post(self, record: AlertRecord) -> None:
        if not self._webhook_url:
            return
        body = {
            "text": f"[{record.severity}] botfactory alert {record.rule}: {record.message}",
            "alert": record.to_dict(),
        }
        try:
            if self._http is not None:
                response = await self._http.post(self._webhook_url, json=body, timeout=self._timeout_s)
            else:
                host = urlsplit(self._webhook_url).hostname or ""
                # A proxy from the environment is for the outside world; a webhook on this machine is called directly.
                async with httpx.AsyncClient(timeout=self._timeout_s, trust_env=host not in _LOOPBACK) as client:
                    response = await client.post(self._webhook_url, json=body)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            self.webhook_failures += 1
            logger.warning(
                "alert_id=<%s>, error=<%s> | alert webhook failed; the alert is stored and logged",
                record.id,
                type(exc).__name__,
            )


def safety_rule_for(settings: AlertSettings, bot: str) -> AlertRule | None:
    """The ``safety`` rule that screens ``bot``'s inbound messages, if any."""
    for rule in settings.rules:
        if rule.kind == "safety" and rule.screen_messages and rule.bot in (None, bot):
            return rule
    return None


def throttled_message(tool: str, throttle: ThrottleRecord) -> str:
    """What the model is told when it calls a throttled tool."""
    until = dt.datetime.fromtimestamp(throttle.until, tz=dt.UTC).strftime("%H:%M")
    return (
        f"tool {tool} is throttled until {until} UTC because {throttle.reason}; "
        "do without it or tell the user it is unavailable for now"
    )


class ThrottleCache:
    """The gateway's copy of the active throttles, re-read at most every ``ttl_s`` so a call costs a dict lookup.

    A throttle set on another host takes effect here within ``ttl_s``; :meth:`invalidate` makes one set in this
    process take effect at the next call. A failed re-read keeps the last copy (and is retried after ``ttl_s``).

    Args:
        store: The throttles.
        ttl_s: How long a copy is used.
        clock: Current time in epoch seconds; tests inject one.
    """

    def __init__(self, store: ThrottleStore, *, ttl_s: float = 5.0, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._clock = clock
        self._throttles: dict[str, ThrottleRecord] = {}
        self._read_at: float | None = None
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        """Re-read the throttles at the next check."""
        self._read_at = None

    async def check(self, tool: str) -> ThrottleRecord | None:
        """The throttle refusing ``tool`` now, or ``None``."""
        now = self._clock()
        if self._read_at is None or now - self._read_at >= self._ttl_s:
            async with self._lock:
                if self._read_at is None or now - self._read_at >= self._ttl_s:
                    await self._refresh(now)
        found = self._throttles.get(tool)
        return found if found is not None and found.until > now else None

    async def _refresh(self, now: float) -> None:
        try:
            self._throttles = {record.tool: record for record in await self._store.list() if record.until > now}
        except Exception:
            logger.warning(
                "throttles=<%d> | could not re-read tool throttles; using the last copy", len(self._throttles)
            )
        self._read_at = now


class AlertEvaluator:
    """Evaluates the alert rules every ``interval_s`` until stopped.

    Args:
        settings: The rules, the interval.
        signals: The measurements.
        notifier: Where alerts go.
        throttles: Where ``tool_errors`` rules throttle tools.
        quarantine: Quarantines a session (``safety`` rules); without it, safety rules only alert.
        throttle_cache: This process's gateway cache, told at once when a tool is throttled.
        clock: Current time in epoch seconds; tests inject one.
    """

    def __init__(
        self,
        settings: AlertSettings,
        *,
        signals: AlertSignals,
        notifier: AlertNotifier,
        throttles: ThrottleStore,
        quarantine: Quarantine | None = None,
        throttle_cache: ThrottleCache | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._checks = RuleChecks(
            signals=signals,
            notifier=notifier,
            throttles=throttles,
            quarantine=quarantine,
            on_throttle=throttle_cache.invalidate if throttle_cache is not None else None,
        )
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.evaluations = 0

    async def evaluate_once(self) -> list[AlertRecord]:
        """Check every rule now; the alerts that are new. A rule whose check fails is logged and skipped."""
        now = self._clock()
        raised: list[AlertRecord] = []
        for rule in self.settings.rules:
            try:
                raised += await self._checks.check(rule, now)
            except Exception:
                logger.exception("rule=<%s>, kind=<%s> | alert rule check failed", rule.name, rule.kind)
        self.evaluations += 1
        return raised

    async def start(self) -> None:
        """Evaluate in the background, the first time after one interval."""
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="botfactory-alerts")

    async def stop(self) -> None:
        """Stop evaluating (an evaluation under way is cancelled; it writes nothing half-done)."""
        self._stopping.set()
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=self.settings.interval_s)
                return
            except TimeoutError:
                pass
            await self.evaluate_once()
