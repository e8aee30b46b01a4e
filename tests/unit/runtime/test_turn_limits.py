"""The turn guard: kill switches before every step (bot, agent, tool), budgets before every model call."""

from __future__ import annotations

from typing import Any

import pytest

from botfactory.config import BudgetSettings, Settings
from botfactory.errors import BudgetExceededError, KillSwitchError, ToolDisabledError
from botfactory.runtime import Controls, TurnLimits, utc_day

NOW = 1_700_000_000.0
DAY = utc_day(NOW)


class FakeStore:
    """The two reads the guard makes: switches that are on, and usage counters."""

    def __init__(self) -> None:
        self.switches: dict[tuple[str, str], str | None] = {}
        self.counters: dict[tuple[str, str, str], tuple[int, float]] = {}
        self.switch_reads = 0

    async def kill_switches(self) -> dict[tuple[str, str], str | None]:
        self.switch_reads += 1
        return dict(self.switches)

    async def usage(self, keys: list[tuple[str, str, str]]) -> dict[tuple[str, str, str], tuple[int, float]]:
        return {key: self.counters.get(key, (0, 0.0)) for key in keys}


def limits(
    store: FakeStore, budgets: BudgetSettings | None = None, user_id: str | None = "u1", **settings: Any
) -> TurnLimits:
    resolved = Settings.load(**settings)
    return TurnLimits(
        settings=resolved,
        budgets=budgets or BudgetSettings(),
        controls=Controls(store, refresh_s=0.0),  # type: ignore[arg-type]
        store=store,  # type: ignore[arg-type]
        bot="support",
        session_id="s1",
        user_id=user_id,
        clock=lambda: NOW,
    )


async def test_a_bot_switch_stops_the_turn_before_any_step() -> None:
    store = FakeStore()
    store.switches[("bot", "support")] = "incident 7"
    guard = limits(store)
    with pytest.raises(KillSwitchError, match=r"support bot is switched off .*\(incident 7\)") as raised:
        await guard.before_model_call(agent_path="router", model="small", prompt_chars=10)
    assert raised.value.ends_turn
    with pytest.raises(KillSwitchError):
        await guard.before_tool_call(agent_path="router", tool="search", is_agent=False)


@pytest.mark.parametrize("switched", ["specialist", "router/specialist"])
async def test_a_switched_off_sub_agent_fails_its_callers_call_and_only_the_entry_agent_ends_the_turn(
    switched: str,
) -> None:
    store = FakeStore()
    store.switches[("agent", switched)] = None
    guard = limits(store)

    await guard.before_model_call(agent_path="router", model="small", prompt_chars=10)  # the router goes on
    with pytest.raises(ToolDisabledError, match="agent 'specialist' is switched off"):
        await guard.before_tool_call(agent_path="router", tool="specialist", is_agent=True)
    with pytest.raises(KillSwitchError) as raised:  # switched off mid-call: its next step fails the call to it
        await guard.before_model_call(agent_path="router/specialist", model="small", prompt_chars=10)
    assert not raised.value.ends_turn

    store.switches = {("agent", "router"): None}
    with pytest.raises(KillSwitchError) as raised:
        await guard.before_model_call(agent_path="router/specialist", model="small", prompt_chars=10)
    assert raised.value.ends_turn


async def test_a_tool_switch_fails_only_that_tool() -> None:
    store = FakeStore()
    store.switches[("tool", "assign_seat")] = "audit"
    guard = limits(store)
    with pytest.raises(ToolDisabledError, match=r"tool 'assign_seat' is switched off by an operator \(audit\)"):
        await guard.before_tool_call(agent_path="router/github", tool="assign_seat", is_agent=False)
    await guard.before_tool_call(agent_path="router/github", tool="search_docs", is_agent=False)
    await guard.before_model_call(agent_path="router/github", model="small", prompt_chars=10)


async def test_switches_are_cached_for_refresh_s_and_reread_when_invalidated() -> None:
    store = FakeStore()
    now = [0.0]
    controls = Controls(store, refresh_s=1.0, clock=lambda: now[0])  # type: ignore[arg-type]
    await controls.switches()
    store.switches[("bot", "support")] = None
    assert await controls.switches() == {}
    now[0] = 1.0
    assert ("bot", "support") in await controls.switches()
    store.switches = {}
    controls.invalidate()
    assert await controls.switches() == {}
    assert store.switch_reads == 3


@pytest.mark.parametrize(
    ("budget", "key", "reset"),
    [
        ("session_tokens", ("session", "s1", ""), "start a new conversation"),
        ("bot_daily_tokens", ("bot", "support", DAY), "it resets at midnight UTC"),
        ("user_daily_tokens", ("user", "u1", DAY), "it resets at midnight UTC"),
    ],
)
async def test_a_token_budget_refuses_a_call_that_would_go_over_it(
    budget: str, key: tuple[str, str, str], reset: str
) -> None:
    store = FakeStore()
    store.counters[key] = (90, 0.0)
    guard = limits(store, BudgetSettings(**{budget: 100}))
    await guard.before_model_call(agent_path="a", model="small", prompt_chars=4 * 8)  # 90 + 9 estimated
    with pytest.raises(BudgetExceededError, match=rf"used up \(90 of 100 tokens\); {reset}"):
        await guard.before_model_call(agent_path="a", model="small", prompt_chars=4 * 10)


async def test_a_cost_budget_prices_the_call_with_the_models_price() -> None:
    store = FakeStore()
    store.counters[("bot", "support", DAY)] = (0, 0.99)
    prices = {"large": {"input_per_million": 1000.0}, "small": {"input_per_million": 1.0}}
    guard = limits(store, BudgetSettings(bot_daily_cost=1.0), prices=prices)
    await guard.before_model_call(agent_path="a", model="small", prompt_chars=4 * 1000)  # 0.001
    with pytest.raises(BudgetExceededError, match=r"0\.9900 of 1\.0000 spent"):
        await guard.before_model_call(agent_path="a", model="large", prompt_chars=4 * 1000)  # 1.0


async def test_a_user_budget_does_not_apply_without_a_user() -> None:
    store = FakeStore()
    store.counters[("user", "u1", DAY)] = (1000, 0.0)
    await limits(store, BudgetSettings(user_daily_tokens=10), user_id=None).before_model_call(
        agent_path="a", model="small", prompt_chars=10
    )
