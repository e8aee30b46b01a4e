"""``GET /metrics`` on a real server: a turn with tool calls shows up as turns, tokens, cost and tool series, the
database gauges show the inbox backlog, and under ``botfactory serve`` only an unrestricted API key may scrape."""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from botfactory.config import BudgetSettings, Settings
from botfactory.memory import KnowledgeBase, OnnxMiniLMEmbedder
from botfactory.observability import Metrics
from botfactory.server import DEFAULT_KB, Platform, create_app
from botfactory.store import (
    BatchWriter,
    CostStore,
    Inbound,
    KnowledgeStore,
    NewApproval,
    RuntimeStore,
    Store,
    UsageDelta,
)
from botfactory.testing import ScriptedModel, call, scripted_inference, serve_app

pytestmark = pytest.mark.integration

OPS_BOT = '''
from botfactory.agents import Agent, Bot, tool


@tool
def read_ticket(ticket_id: str) -> str:
    """Read a ticket.

    Args:
        ticket_id: The ticket, e.g. T-1.
    """
    return f"ticket {ticket_id}: the checkout service is slow"


@tool
def flaky_lookup(host: str) -> str:
    """Look a host up.

    Args:
        host: The host name.
    """
    raise RuntimeError("lookup service down")


bot = Bot(
    name="ops",
    agent=Agent(name="ops", instructions="You run operations.", model="large", tools=[read_ticket, flaky_lookup]),
)
'''

PRICES = {"large": {"input_per_million": 1000.0, "output_per_million": 2000.0}}


@pytest.fixture(scope="module")
def tiny_database(tmp_path_factory: pytest.TempPathFactory, embedder: OnnxMiniLMEmbedder) -> Path:
    """A database whose default knowledge base holds one note, so the platform skips seeding the shipped docs."""
    import asyncio

    root = tmp_path_factory.mktemp("metrics-seed")
    (root / "docs").mkdir()
    (root / "docs" / "note.md").write_text("# Note\n\nThe metrics tests need no documentation.\n")

    async def seed() -> None:
        async with await Store.open(f"sqlite:///{root / 'botfactory.db'}") as store:
            knowledge = KnowledgeBase(DEFAULT_KB, KnowledgeStore(store.engine), embedder)
            assert (await knowledge.ingest(root / "docs")).added == 1

    asyncio.run(seed())
    return root / "botfactory.db"


@pytest.fixture
def scripted() -> dict[str, ScriptedModel]:
    return {"large": ScriptedModel([], name="large"), "small": ScriptedModel([], name="small")}


@pytest.fixture
async def platform(
    tmp_path: Path, tiny_database: Path, embedder: OnnxMiniLMEmbedder, scripted: dict[str, ScriptedModel]
) -> AsyncIterator[Platform]:
    bots_dir = tmp_path / "bots"
    bots_dir.mkdir()
    (bots_dir / "ops.py").write_text(textwrap.dedent(OPS_BOT))
    shutil.copy(tiny_database, tmp_path / "botfactory.db")
    settings = Settings.load(
        home=tmp_path,
        github_org="example-org",
        bots_dir=bots_dir,
        prices=PRICES,
        budgets={"bot_daily_tokens": 10_000},
    )
    started = await Platform.start(settings, inference=scripted_inference(scripted), embedder=embedder)
    try:
        yield started
    finally:
        await started.aclose()


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def test_a_turn_with_tool_calls_shows_in_the_scraped_series(
    platform: Platform, scripted: dict[str, ScriptedModel]
) -> None:
    scripted["large"].script = [
        call("read_ticket", ticket_id="T-1"),
        call("flaky_lookup", host="db1"),
        call("drop_tables"),  # never granted: denied
        "The checkout service is slow.",
    ]
    result = await platform.runtime.invoke("ops", session_id="m-1", text="what is wrong?", user_id="u1")
    assert result.status == "completed"
    assert platform.worker is not None
    await platform.worker.stop(grace_s=1.0)  # from here messages wait in the inbox
    await platform.runtime.enqueue("ops", session_id="m-2", text="anyone there?", user_id="u2")

    async with serve_app(create_app(platform)) as base_url, httpx.AsyncClient(base_url=base_url) as http:
        response = await http.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = parse(response.text)
    assert value(samples, "botfactory_turns_total", bot="ops", status="completed") == 1
    assert value(samples, "botfactory_turn_latency_seconds_count", bot="ops") == 1
    assert value(samples, "botfactory_time_to_first_token_seconds_count", bot="ops") == 1
    ttft = value(samples, "botfactory_time_to_first_token_seconds_sum", bot="ops")
    latency = value(samples, "botfactory_turn_latency_seconds_sum", bot="ops")
    assert ttft is not None and latency is not None and 0 <= ttft <= latency
    user = {"bot": "ops", "model": "large", "user": "u1"}
    assert value(samples, "botfactory_model_tokens_total", direction="in", **user) == 40  # 4 calls, 10 in each
    assert value(samples, "botfactory_model_tokens_total", direction="out", **user) == 20
    assert value(samples, "botfactory_model_cost_total", **user) == pytest.approx((40 * 1000 + 20 * 2000) / 1e6)
    assert value(samples, "botfactory_tool_calls_total", tool="read_ticket", outcome="ok") == 1
    assert value(samples, "botfactory_tool_calls_total", tool="flaky_lookup", outcome="error") == 1
    assert value(samples, "botfactory_tool_errors_total", tool="flaky_lookup") == 1
    assert value(samples, "botfactory_policy_denials_total", tool="drop_tables") == 1
    assert value(samples, "botfactory_inbox_depth", bot="ops") == 1
    age = value(samples, "botfactory_inbox_oldest_age_seconds", bot="ops")
    assert age is not None and 0 <= age < 60
    assert value(samples, "botfactory_inbox_depth", bot="support") == 0
    assert value(samples, "botfactory_approvals_pending", bot="ops") == 0
    assert value(samples, "botfactory_budget_remaining_tokens", bot="ops") == 10_000 - 60


async def test_under_serve_scraping_needs_an_api_key_for_every_bot(platform: Platform) -> None:
    everything = await platform.api_keys.create(bot=None, name="prometheus")
    ops_only = await platform.api_keys.create(bot="ops", name="ops")
    async with serve_app(create_app(platform, auth="keys")) as base_url, httpx.AsyncClient(base_url=base_url) as http:
        anonymous = await http.get("/metrics")
        scraped = await http.get("/metrics", headers={"Authorization": f"Bearer {everything.secret}"})
        limited = await http.get("/metrics", headers={"Authorization": f"Bearer {ops_only.secret}"})

    assert anonymous.status_code == 401
    assert scraped.status_code == 200
    assert "botfactory_inbox_depth" in scraped.text
    assert limited.status_code == 403
    assert "created without --bot" in limited.json()["error"]["message"]


async def test_the_database_gauges_on_sqlite_and_postgresql(database_url: str) -> None:
    now = 1_700_000_000.0  # 2023-11-14 UTC
    async with await Store.open(database_url) as store:
        writer = BatchWriter(database_url)
        try:
            queue = RuntimeStore(writer, clock=lambda: now)
            for n in range(2):
                await queue.enqueue(Inbound(session_id=f"g{n}", bot="support", text="hi", user_id="u1"))
            await queue.approvals.request(
                NewApproval(
                    call_key="t:1",
                    session_id="g0",
                    turn_id="t",
                    bot="ops",
                    agent_path="ops",
                    tool="restart_service",
                    arguments={},
                    requester="u1",
                    expires_at=now + 600,
                )
            )
            delta = UsageDelta(bot="support", user_id="u1", session_id="g0", day="2023-11-14", tokens=40, cost=0.5)
            await queue.add_usage(delta)
        finally:
            await writer.close()
        metrics = Metrics()
        budgets = {"support": BudgetSettings(bot_daily_tokens=100, bot_daily_cost=2.0), "ops": BudgetSettings()}
        metrics.watch_database(CostStore(store.engine), lambda: budgets, clock=lambda: now + 12.5)
        samples = parse((await metrics.exposition())[0].decode())

    assert value(samples, "botfactory_inbox_depth", bot="support") == 2
    assert value(samples, "botfactory_inbox_oldest_age_seconds", bot="support") == 12.5
    assert value(samples, "botfactory_inbox_depth", bot="ops") == 0
    assert value(samples, "botfactory_approvals_pending", bot="ops") == 1
    assert value(samples, "botfactory_budget_remaining_tokens", bot="support") == 60
    assert value(samples, "botfactory_budget_remaining_cost", bot="support") == 1.5
