"""Alert rules on a real database (SQLite and PostgreSQL): each kind fires on seeded data and resolves when its
condition clears, with an injected clock; new alerts reach a real webhook receiver on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from botfactory.config import AlertRule, AlertSettings
from botfactory.observability import AlertEvaluator, AlertNotifier, ThrottleCache
from botfactory.store import AlertSignals, AlertStore, AuditRecord, AuditStore, Store, ThrottleStore, new_id
from botfactory.store.schema import inbox, messages, sessions, steps, turns, usage_counters
from botfactory.testing import run_standin_server

pytestmark = pytest.mark.integration

NOON: float = dt.datetime(2025, 3, 10, 12, 0, tzinfo=dt.UTC).timestamp()


class Clock:
    def __init__(self, now: float = NOON) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    store: Store
    clock: Clock
    alerts: AlertStore
    throttles: ThrottleStore
    quarantined: list[str] = field(default_factory=list)

    def evaluator(
        self, *rules: AlertRule, webhook_url: str | None = None, cache: ThrottleCache | None = None
    ) -> AlertEvaluator:
        async def quarantine(session_id: str) -> bool:
            self.quarantined.append(session_id)
            return True

        settings = AlertSettings(rules=list(rules), webhook_url=webhook_url)
        return AlertEvaluator(
            settings,
            signals=AlertSignals(self.store.engine),
            notifier=AlertNotifier.from_settings(settings, self.alerts),
            throttles=self.throttles,
            quarantine=quarantine,
            throttle_cache=cache,
            clock=self.clock,
        )

    async def turn(
        self, bot: str, *, enqueued_at: float, first_token_s: float | None, status: str = "completed"
    ) -> None:
        """One turn of ``bot`` whose input was queued at ``enqueued_at`` and whose first model call ended
        ``first_token_s`` later (``None``: no model answer yet)."""
        session_id, message_id, turn_id = f"s-{new_id()}", new_id(), new_id()
        async with self.store.engine.begin() as c:
            await c.execute(
                sessions.insert().values(
                    id=session_id, bot=bot, status="active", created_at=enqueued_at, updated_at=enqueued_at, last_seq=1
                )
            )
            await c.execute(
                messages.insert().values(
                    id=message_id, session_id=session_id, seq=1, role="user", text="hi", created_at=enqueued_at
                )
            )
            await c.execute(
                turns.insert().values(
                    id=turn_id,
                    session_id=session_id,
                    bot=bot,
                    status=status,
                    input_message_id=message_id,
                    started_at=enqueued_at + 0.01,
                )
            )
            await c.execute(
                inbox.insert().values(
                    message_id=message_id,
                    session_id=session_id,
                    bot=bot,
                    seq=1,
                    status="done" if status == "completed" else "running",
                    turn_id=turn_id,
                    channel="api",
                    enqueued_at=enqueued_at,
                )
            )
            if first_token_s is not None:
                for position, extra in ((0, 0.0), (2, 5.0)):  # the first model call, and a later one
                    await c.execute(
                        steps.insert().values(
                            turn_id=turn_id,
                            position=position,
                            agent_path=bot,
                            kind="model",
                            name="small",
                            status="completed",
                            started_at=enqueued_at + 0.02,
                            finished_at=enqueued_at + first_token_s + extra,
                        )
                    )

    async def spend(self, bot: str, day: str, cost: float) -> None:
        async with self.store.engine.begin() as c:
            await c.execute(usage_counters.insert().values(scope="bot", key=bot, day=day, tokens=1000, cost=cost))

    async def calls(self, tool: str, outcomes: dict[str, int], *, at: float, session_id: str = "s1") -> None:
        records = [
            AuditRecord(
                id=new_id(),
                at=at,
                principal="u1",
                bot="helper",
                agent_path="helper",
                tool=tool,
                arguments={},
                decision="deny" if outcome == "denied" else "allow",
                reasons=(),
                approval=None,
                outcome=outcome,
                error=None,
                duration_ms=1.0,
                session_id=session_id,
                turn_id=None,
                position=None,
                trace_id=None,
            )
            for outcome, count in outcomes.items()
            for _ in range(count)
        ]
        await AuditStore(self.store.engine).insert(records)


@pytest.fixture
async def rig(database_url: str) -> AsyncIterator[Rig]:
    clock = Clock()
    async with await Store.open(database_url) as store:
        yield Rig(
            store=store,
            clock=clock,
            alerts=AlertStore(store.engine, clock=clock),
            throttles=ThrottleStore(store.engine, clock=clock),
        )


async def test_ttft_alert_fires_on_the_max_of_few_turns_and_resolves_when_they_leave_the_window(rig: Rig) -> None:
    rule = AlertRule(name="slow-first-token", kind="ttft", threshold_s=2.0, window_s=300)
    evaluator = rig.evaluator(rule)
    await rig.turn("support", enqueued_at=NOON - 100, first_token_s=0.5)
    await rig.turn("support", enqueued_at=NOON - 50, first_token_s=4.0)
    await rig.turn("itsm", enqueued_at=NOON - 50, first_token_s=1.0)

    raised = await evaluator.evaluate_once()

    assert [(a.kind, a.subject) for a in raised] == [("ttft", "support")]
    assert raised[0].data["statistic"] == "max" and raised[0].data["value_s"] == pytest.approx(4.0)
    assert "4.0 s" in raised[0].message and "above 2 s" in raised[0].message
    assert await evaluator.evaluate_once() == []  # still slow: the same alert stays open, nobody is told twice
    assert len(await rig.alerts.list(status="open")) == 1

    rig.clock.now += 301  # the slow turn leaves the window
    await rig.turn("support", enqueued_at=rig.clock.now - 10, first_token_s=0.3)
    assert await evaluator.evaluate_once() == []
    assert await rig.alerts.list(status="open") == []
    assert [a.status for a in await rig.alerts.list()] == ["resolved"]


async def test_ttft_uses_p95_with_many_turns_and_counts_a_turn_still_waiting_for_the_model(rig: Rig) -> None:
    evaluator = rig.evaluator(AlertRule(name="ttft", kind="ttft", threshold_s=3.0))
    for i in range(39):
        await rig.turn("support", enqueued_at=NOON - 200 + i, first_token_s=1.0)
    await rig.turn("support", enqueued_at=NOON - 100, first_token_s=9.0)  # one outlier in 40: under the p95
    assert await evaluator.evaluate_once() == []

    await rig.turn("itsm", enqueued_at=NOON - 60, first_token_s=None, status="running")  # hung model: 60 s so far
    raised = await evaluator.evaluate_once()
    assert [a.subject for a in raised] == ["itsm"]
    assert raised[0].data["value_s"] == pytest.approx(60.0)


async def test_spend_alert_on_budget_and_on_baseline_resolves_the_next_day(rig: Rig) -> None:
    budget = AlertRule(name="budget", kind="spend", daily_budget=10.0)
    baseline = AlertRule(name="baseline", kind="spend", baseline_factor=3.0)
    evaluator = rig.evaluator(budget, baseline)
    for day in ("2025-03-07", "2025-03-08", "2025-03-09"):
        await rig.spend("support", day, 2.0)
    await rig.spend("support", "2025-03-10", 7.0)  # 3.5x its average day of 2, under the budget of 10
    await rig.spend("itsm", "2025-03-10", 12.0)  # over the budget, and no earlier day: no baseline

    raised = await evaluator.evaluate_once()

    assert sorted((a.rule, a.subject) for a in raised) == [("baseline", "support"), ("budget", "itsm")]
    by_rule = {a.rule: a for a in raised}
    assert "over the daily budget of 10" in by_rule["budget"].message
    assert "3.5x its average day of 2" in by_rule["baseline"].message

    rig.clock.now += 86_400  # a new UTC day: nothing spent yet
    assert await evaluator.evaluate_once() == []
    assert await rig.alerts.list(status="open") == []


async def test_tool_errors_alert_throttles_the_tool_and_resolves_after_the_throttle(rig: Rig) -> None:
    rule = AlertRule(name="flaky-tools", kind="tool_errors", error_rate=0.5, min_calls=5, throttle_s=120, window_s=300)
    cache = ThrottleCache(rig.throttles, clock=rig.clock)
    evaluator = rig.evaluator(rule, cache=cache)
    await rig.calls("github.assign_seat", {"ok": 2, "error": 3, "timeout": 1, "denied": 4}, at=NOON - 30)
    await rig.calls("search_docs", {"ok": 9, "error": 1}, at=NOON - 30)  # 10 %: fine
    await rig.calls("rare_tool", {"error": 3}, at=NOON - 30)  # too few calls to judge

    raised = await evaluator.evaluate_once()

    assert [(a.subject, a.data["failed"], a.data["calls"]) for a in raised] == [("github.assign_seat", 4, 6)]
    assert "67% (4 of 6 calls failed)" in raised[0].message
    assert await rig.throttles.active() == {"github.assign_seat": NOON + 120}
    throttle = await cache.check("github.assign_seat")
    assert throttle is not None and "error rate was 67%" in throttle.reason
    assert await cache.check("search_docs") is None

    rig.clock.now += 60  # still throttled: the alert stays open
    assert await evaluator.evaluate_once() == []
    assert len(await rig.alerts.list(status="open")) == 1

    rig.clock.now += 61  # the throttle ended; the old failures are still in the window but do not count again
    assert await evaluator.evaluate_once() == []
    assert await rig.alerts.list(status="open") == []
    assert await rig.throttles.active() == {}


async def test_tool_errors_after_a_throttle_ends_throttle_the_tool_again(rig: Rig) -> None:
    rule = AlertRule(name="flaky", kind="tool_errors", error_rate=0.5, min_calls=3, throttle_s=60)
    evaluator = rig.evaluator(rule)
    await rig.calls("lookup", {"error": 3}, at=NOON - 5)
    assert len(await evaluator.evaluate_once()) == 1
    rig.clock.now += 61
    await rig.calls("lookup", {"error": 3}, at=rig.clock.now - 1)  # failing again since the throttle ended
    assert await evaluator.evaluate_once() == []  # the alert was never resolved: no new one ...
    assert await rig.throttles.active() == {"lookup": rig.clock.now + 60}  # ... but the tool is throttled again


async def test_safety_rule_quarantines_a_session_with_repeated_policy_denials_once(rig: Rig) -> None:
    rule = AlertRule(name="safety", kind="safety", max_denials=3, window_s=600)
    evaluator = rig.evaluator(rule)
    await rig.calls("delete_repo", {"denied": 3}, at=NOON - 60, session_id="attacker")
    await rig.calls("delete_repo", {"denied": 2}, at=NOON - 60, session_id="curious")

    raised = await evaluator.evaluate_once()

    assert [(a.kind, a.subject, a.data["denials"]) for a in raised] == [("safety", "attacker", 3)]
    assert "botfactory sessions release attacker" in raised[0].message
    assert rig.quarantined == ["attacker"]
    assert await evaluator.evaluate_once() == []  # open already: not quarantined twice
    assert rig.quarantined == ["attacker"]

    await rig.alerts.resolve_open(None, "attacker", kind="safety")  # what releasing the session does
    rig.clock.now += 1
    assert await evaluator.evaluate_once() == []  # the denials before the release do not count again
    await rig.calls("delete_repo", {"denied": 3}, at=rig.clock.now, session_id="attacker")
    assert [a.subject for a in await evaluator.evaluate_once()] == ["attacker"]


class Receiver:
    """A webhook receiver: records every JSON body POSTed to it; answers ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.status = status

    async def hook(self, request: Request) -> Response:
        self.bodies.append(await request.json())
        return JSONResponse({"ok": self.status == 200}, status_code=self.status)


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    hooks = Receiver()
    with run_standin_server(
        SimpleNamespace(app=Starlette(routes=[Route("/hook", hooks.hook, methods=["POST"])]))
    ) as url:
        yield hooks, f"{url}/hook"


async def test_a_new_alert_is_posted_to_the_webhook_once(rig: Rig, receiver: tuple[Receiver, str]) -> None:
    hooks, url = receiver
    evaluator = rig.evaluator(
        AlertRule(name="budget", kind="spend", daily_budget=1.0, severity="critical"), webhook_url=url
    )
    await rig.spend("support", "2025-03-10", 5.0)

    await evaluator.evaluate_once()
    await evaluator.evaluate_once()

    assert len(hooks.bodies) == 1
    body = hooks.bodies[0]
    assert body["text"].startswith("[critical] botfactory alert budget: bot support: spend today")
    assert body["alert"]["subject"] == "support" and body["alert"]["status"] == "open"


async def test_a_failing_webhook_is_logged_and_the_alert_still_stored(
    rig: Rig, receiver: tuple[Receiver, str], caplog: pytest.LogCaptureFixture
) -> None:
    hooks, url = receiver
    hooks.status = 500
    evaluator = rig.evaluator(AlertRule(name="budget", kind="spend", daily_budget=1.0), webhook_url=url)
    await rig.spend("support", "2025-03-10", 5.0)

    raised = await evaluator.evaluate_once()

    assert len(raised) == 1 and len(hooks.bodies) == 1
    assert [a.id for a in await rig.alerts.list()] == [raised[0].id]
    assert any("alert webhook failed" in r.getMessage() for r in caplog.records)
    assert any(r.levelname == "WARNING" and "spend today" in r.getMessage() for r in caplog.records)
