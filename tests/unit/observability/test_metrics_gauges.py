"""The gauges read from the database at scrape time: inbox depth and age, pending approvals, budget left."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from botfactory.config import BudgetSettings
from botfactory.observability import Metrics
from botfactory.store import BatchWriter, CostStore, Inbound, NewApproval, RuntimeStore, Store, UsageDelta

NOW = 1_700_000_000.0  # 2023-11-14 UTC
TODAY = "2023-11-14"


@pytest.fixture
async def queue(tmp_path: Path) -> AsyncIterator[tuple[Store, RuntimeStore]]:
    url = f"sqlite:///{tmp_path / 'botfactory.db'}"
    async with await Store.open(url) as store:
        writer = BatchWriter(url)
        try:
            yield store, RuntimeStore(writer, clock=lambda: NOW)
        finally:
            await writer.close()


def samples(body: bytes) -> dict[tuple[str, str], float]:
    return {
        (sample.name, sample.labels.get("bot", "")): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


async def test_gauges_show_the_backlog_its_age_pending_approvals_and_budget_left(
    queue: tuple[Store, RuntimeStore],
) -> None:
    store, runtime = queue
    for n in range(3):
        await runtime.enqueue(Inbound(session_id=f"s{n}", bot="support", text="hello", user_id="u1"))
    await runtime.approvals.request(
        NewApproval(
            call_key="t1:1",
            session_id="s0",
            turn_id="t1",
            bot="ops",
            agent_path="ops",
            tool="restart_service",
            arguments={},
            requester="u1",
            expires_at=NOW + 600,
        )
    )
    await runtime.add_usage(UsageDelta(bot="support", user_id="u1", session_id="s0", day=TODAY, tokens=300, cost=0.25))
    await runtime.add_usage(
        UsageDelta(bot="support", user_id="u1", session_id="s0", day="2023-11-13", tokens=9, cost=9)
    )
    metrics = Metrics()
    budgets = {
        "support": BudgetSettings(bot_daily_tokens=1000, bot_daily_cost=1.0),
        "ops": BudgetSettings(),
        "tight": BudgetSettings(bot_daily_tokens=10),
    }
    metrics.watch_database(CostStore(store.engine), lambda: budgets, clock=lambda: NOW + 45)

    body, _ = await metrics.exposition()
    values = samples(body)

    assert values[("botfactory_inbox_depth", "support")] == 3
    assert values[("botfactory_inbox_oldest_age_seconds", "support")] == 45
    assert values[("botfactory_inbox_depth", "ops")] == 0  # every known bot has a series, idle ones at 0
    assert values[("botfactory_approvals_pending", "ops")] == 1
    assert values[("botfactory_approvals_pending", "support")] == 0
    assert values[("botfactory_budget_remaining_tokens", "support")] == 700  # yesterday's usage does not count
    assert values[("botfactory_budget_remaining_cost", "support")] == 0.75
    assert values[("botfactory_budget_remaining_tokens", "tight")] == 10
    assert ("botfactory_budget_remaining_tokens", "ops") not in values  # no budget, no series
    assert ("botfactory_budget_remaining_cost", "tight") not in values


async def test_expired_approvals_are_not_pending_and_an_overspent_budget_shows_zero(
    queue: tuple[Store, RuntimeStore],
) -> None:
    store, runtime = queue
    await runtime.approvals.request(
        NewApproval(
            call_key="t1:1",
            session_id="s0",
            turn_id="t1",
            bot="ops",
            agent_path="ops",
            tool="restart_service",
            arguments={},
            requester=None,
            expires_at=NOW + 10,
        )
    )
    await runtime.add_usage(UsageDelta(bot="ops", user_id=None, session_id=None, day=TODAY, tokens=50, cost=3.0))
    metrics = Metrics()
    metrics.watch_database(
        CostStore(store.engine), lambda: {"ops": BudgetSettings(bot_daily_cost=2.0)}, clock=lambda: NOW + 60
    )

    values = samples((await metrics.exposition())[0])

    assert values[("botfactory_approvals_pending", "ops")] == 0
    assert values[("botfactory_budget_remaining_cost", "ops")] == 0
