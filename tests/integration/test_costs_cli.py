"""Spend from real turns: ``botfactory costs`` and ``GET /v1/costs`` with a price table in botfactory.toml.

A priced model alias costs money, a local one (no price) costs 0 but its tokens still count.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest

from botfactory.cli import main
from botfactory.config import Settings
from botfactory.memory import KnowledgeBase, OnnxMiniLMEmbedder
from botfactory.server import DEFAULT_KB, Platform, create_app
from botfactory.store import KnowledgeStore, Store
from botfactory.testing import ScriptedModel, scripted_inference

pytestmark = pytest.mark.integration

BOTS = """
from botfactory.agents import Agent, Bot

bot = Bot(name="pricey", agent=Agent(name="pricey", instructions="Answer.", model="large"))
"""
LOCAL_BOT = """
from botfactory.agents import Agent, Bot

bot = Bot(name="thrifty", agent=Agent(name="thrifty", instructions="Answer.", model="small"))
"""
TOML = """
[prices.large]
input_per_million = 3.0
output_per_million = 15.0
"""
# The scripted models report 10 input and 5 output tokens per call.
LARGE_CALL_COST = (10 * 3.0 + 5 * 15.0) / 1_000_000


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    (home / "bots").mkdir(parents=True)
    (home / "botfactory.toml").write_text(TOML)
    (home / "bots" / "pricey.py").write_text(textwrap.dedent(BOTS))
    (home / "bots" / "thrifty.py").write_text(textwrap.dedent(LOCAL_BOT))
    monkeypatch.setenv("BOTFACTORY_HOME", str(home))
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(tmp_path)
    return home


def today() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")


async def start(home: Path, embedder: OnnxMiniLMEmbedder) -> Platform:
    settings = Settings.load(bots_dir=home / "bots", github_org="example-org")
    assert settings.price("large").input_per_million == 3.0  # read from botfactory.toml
    async with await Store.open(settings.resolved_database_url) as store:  # one note: skip seeding the shipped docs
        (home / "docs").mkdir(exist_ok=True)
        (home / "docs" / "note.md").write_text("# Note\n\nNothing to see.\n")
        await KnowledgeBase(DEFAULT_KB, KnowledgeStore(store.engine), embedder).ingest(home / "docs")
    models = {"large": ScriptedModel(["a", "b"], name="large"), "small": ScriptedModel(["c"], name="small")}
    return await Platform.start(settings, inference=scripted_inference(models), embedder=embedder)


def run_turns(home: Path, embedder: OnnxMiniLMEmbedder, *, api: bool = False) -> dict[str, Any]:
    """Two turns on the priced bot (user u1), one on the local one (u2); with ``api``, the API's answers too."""

    async def go() -> dict[str, Any]:
        platform = await start(home, embedder)
        answers: dict[str, Any] = {}
        try:
            for session, bot, user in (("c-1", "pricey", "u1"), ("c-2", "pricey", "u1"), ("c-3", "thrifty", "u2")):
                assert (await platform.runtime.invoke(bot, session_id=session, text="hi", user_id=user)).status == (
                    "completed"
                )
            if api:
                answers = await query_api(platform)
        finally:
            await platform.aclose()
        return answers

    return asyncio.run(go())


async def query_api(platform: Platform) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    transport = httpx.ASGITransport(app=create_app(platform))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        for name, params in {
            "by_model": {"by": "model", "since": "today"},
            "default": {},
            "one_bot": {"by": "bot", "key": "thrifty", "since": "30d"},
            "bad_since": {"since": "yesterday"},
            "zero_days": {"since": "0d"},
            "bad_date": {"since": "2024-02-30"},
            "bad_by": {"by": "tool"},
        }.items():
            response = await http.get("/v1/costs", params=params)
            answers[name] = (response.status_code, response.json())
    key = await platform.api_keys.create(bot="thrifty")
    remote = httpx.ASGITransport(app=create_app(platform, auth="keys"), client=("203.0.113.9", 5000))
    async with httpx.AsyncClient(transport=remote, base_url="http://test") as http:
        headers = {"Authorization": f"Bearer {key.secret}"}
        for name, params in {"scoped_bot": {"by": "bot"}, "scoped_user": {"by": "user"}}.items():
            response = await http.get("/v1/costs", params=params, headers=headers)
            answers[name] = (response.status_code, response.json())
    return answers


def test_costs_by_model_price_the_priced_alias_and_count_the_local_one_free(
    home: Path, embedder: OnnxMiniLMEmbedder, capsys: pytest.CaptureFixture[str]
) -> None:
    run_turns(home, embedder)

    assert main(["costs", "--by", "model", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    totals = {row["key"]: row for row in report["totals"]}
    assert totals["large"]["tokens"] == 30 and totals["large"]["cost"] == pytest.approx(2 * LARGE_CALL_COST)
    assert totals["small"]["tokens"] == 15 and totals["small"]["cost"] == 0
    assert [row["key"] for row in report["totals"]] == ["large", "small"]  # most expensive first
    assert report["total"] == {"tokens": 45, "cost": pytest.approx(2 * LARGE_CALL_COST)}
    assert report["until"] == today() and report["since"] < today()
    assert [(r["day"], r["key"]) for r in report["rows"]] == [(today(), "large"), (today(), "small")]

    assert main(["costs", "--by", "user"]) == 0
    table = capsys.readouterr().out
    assert "spend by user" in table and "u1" in table and "u2" in table and "total" in table
    assert f"{2 * LARGE_CALL_COST:.4f}" in table

    assert main(["costs", "--by", "bot", "--since", "today", "--daily"]) == 0
    daily = capsys.readouterr().out
    assert today() in daily and "pricey" in daily and "thrifty" in daily

    assert main(["sessions", "show", "c-1"]) == 0  # a turn's own cost
    assert f"cost {LARGE_CALL_COST:.4f}" in capsys.readouterr().out


def test_a_bad_period_is_a_clear_error_and_an_empty_one_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["costs", "--since", "yesterday"]) == 2
    error = capsys.readouterr().err
    assert "since must be a period" in error and "7d" in error
    assert main(["costs", "--by", "tool"]) != 0
    capsys.readouterr()
    assert main(["costs", "--since", "30d"]) == 0
    assert "no model usage since" in capsys.readouterr().out


def test_the_api_reports_spend_and_refuses_bad_periods(home: Path, embedder: OnnxMiniLMEmbedder) -> None:
    answers = run_turns(home, embedder, api=True)

    status, by_model = answers["by_model"]
    assert status == 200
    assert by_model["since"] == today() == by_model["until"]
    assert {r["key"]: r["cost"] for r in by_model["totals"]} == {
        "large": pytest.approx(2 * LARGE_CALL_COST),
        "small": 0,
    }
    status, default = answers["default"]
    assert status == 200 and default["by"] == "bot" and default["total"]["tokens"] == 45
    status, one_bot = answers["one_bot"]
    assert status == 200 and [r["key"] for r in one_bot["rows"]] == ["thrifty"]
    for bad in ("bad_since", "zero_days", "bad_date", "bad_by"):
        status, body = answers[bad]
        assert status == 400, bad
        assert body["error"]["code"] == "invalid_field"
    assert "7d" in answers["bad_since"][1]["error"]["message"]
    status, scoped = answers["scoped_bot"]  # a key for one bot sees only that bot
    assert status == 200 and {r["key"] for r in scoped["totals"]} == {"thrifty"}
    status, refused = answers["scoped_user"]
    assert status == 403 and "by=bot" in refused["error"]["message"]
