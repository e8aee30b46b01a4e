"""Limits and money: per-turn steps, wall time and tokens; budgets checked before each model call; kill switches for a
bot, an agent or a tool that take effect within one step."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import pytest
from harness import Gate, GatedModel, Harness, MakeRuntime, echo, echo_bot

from botfactory.agents import Agent, Bot, Tool
from botfactory.config import BudgetSettings
from botfactory.testing import ScriptedModel, call


def working_bot(
    gate: Gate | None = None, *, name: str = "worker", runs: list[str] | None = None, **options: Any
) -> Bot:
    """A bot whose agent has one tool, ``work``, which waits at ``gate`` (when given) on its first run."""

    async def work() -> str:
        """Do one piece of work."""
        if runs is not None:
            runs.append("work")
        if gate is not None and gate.arrivals == 0:
            await gate.passage()
        return "worked"

    agent = Agent(name=name, instructions="Work.", model="small", tools=[Tool(work)])
    return Bot(name=name, agent=agent, **options)


async def assert_stopped(harness: Harness, session_id: str, code: str, *, turns: int = 1) -> str:
    """The session's last turn failed with ``code``, told the user why, and was not retried."""
    ended = await harness.wait_turns(session_id, turns)
    turn = ended[-1]
    assert (turn.status, turn.error_code, turn.attempts) == ("failed", code, 1)
    assert turn.reply is not None and turn.reply.startswith("Sorry, I had to stop: ")
    assert (await harness.replies(session_id))[-1] == turn.reply
    assert [i.status for i in await harness.stack.queue.inbox_items(session_id)][-1] == "done"
    return turn.reply


async def test_turn_max_steps_stops_a_looping_turn(make_runtime: MakeRuntime) -> None:
    runs: list[str] = []
    model = ScriptedModel([call("work")], cycle=True)
    harness = await make_runtime(bots=[working_bot(runs=runs)], models={"small": model}, turn_max_steps=3)
    await harness.runtime.enqueue("worker", session_id="s", text="loop")

    reply = await assert_stopped(harness, "s", "step_limit")
    assert "3 model and tool calls" in reply
    assert (len(model.requests), runs) == (2, ["work"])  # steps 1-3: model, tool, model; step 4 never ran


async def test_turn_max_seconds_stops_a_turn_at_its_call_in_flight(make_runtime: MakeRuntime) -> None:
    model = GatedModel([echo])
    harness = await make_runtime(models={"small": model}, turn_max_seconds=0.3)
    started = time.monotonic()
    await harness.runtime.enqueue("echo", session_id="s", text="slow")

    reply = await assert_stopped(harness, "s", "time_limit")
    assert "0.3 seconds" in reply
    assert model.gate.cancelled == 1
    assert time.monotonic() - started < 3


async def test_turn_max_tokens_stops_a_turn_that_spends_too_much(make_runtime: MakeRuntime) -> None:
    model = ScriptedModel([call("work")], cycle=True)  # 15 tokens a call
    harness = await make_runtime(bots=[working_bot(max_tokens_per_turn=20)], models={"small": model})
    await harness.runtime.enqueue("worker", session_id="s", text="loop")

    await assert_stopped(harness, "s", "token_limit")
    assert len(model.requests) == 2


@pytest.mark.parametrize(
    ("budget", "second_session", "second_user"),
    [
        ("session_tokens", "s", "u1"),
        ("bot_daily_tokens", "s2", "u2"),
        ("user_daily_tokens", "s2", "u1"),
    ],
)
async def test_a_token_budget_stops_the_next_turn_before_its_model_call(
    make_runtime: MakeRuntime, budget: str, second_session: str, second_user: str
) -> None:
    model = ScriptedModel([echo], cycle=True)  # 15 tokens a call
    harness = await make_runtime(models={"small": model}, settings={"budgets": {budget: 16}})
    await harness.runtime.enqueue("echo", session_id="s", text="one", user_id="u1")
    [first] = await harness.wait_turns("s", 1)
    assert (first.status, first.input_tokens + first.output_tokens) == ("completed", 15)

    await harness.runtime.enqueue("echo", session_id=second_session, text="two", user_id=second_user)
    reply = await assert_stopped(harness, second_session, "budget_exceeded", turns=2 if second_session == "s" else 1)
    assert "used up (15 of 16 tokens)" in reply
    assert len(model.requests) == 1  # enforced before the call, not reported after it

    # Another session, user and bot-day are not charged for it: only the exhausted scope stops.
    await harness.runtime.enqueue("echo", session_id="s3", text="three", user_id="u3")
    [third] = await harness.wait_turns("s3", 1)
    assert third.status == ("failed" if budget == "bot_daily_tokens" else "completed")


async def test_a_cost_budget_uses_the_price_table(make_runtime: MakeRuntime) -> None:
    model = ScriptedModel([echo], cycle=True)  # 10 input and 5 output tokens a call
    bot = echo_bot(budgets=BudgetSettings(bot_daily_cost=0.021))
    prices = {"small": {"input_per_million": 1000.0, "output_per_million": 2000.0}}  # 0.02 a call
    harness = await make_runtime(bots=[bot], models={"small": model}, settings={"prices": prices})
    await harness.runtime.enqueue("echo", session_id="s", text="one")
    [first] = await harness.wait_turns("s", 1)
    assert first.status == "completed" and first.cost == pytest.approx(0.02)

    await harness.runtime.enqueue("echo", session_id="s", text="two")
    reply = await assert_stopped(harness, "s", "budget_exceeded", turns=2)
    assert "0.0200 of 0.0210 spent" in reply
    assert len(model.requests) == 1


@pytest.mark.parametrize("switcher", ["same_process", "other_process"])
async def test_a_bot_kill_switch_stops_a_running_turn_at_its_next_step(
    make_runtime: MakeRuntime, switcher: str
) -> None:
    gate = Gate()
    model = ScriptedModel([call("work"), "never reached", echo], cycle=False)
    harness = await make_runtime(bots=[working_bot(gate)], models={"small": model})
    other = await make_runtime(bots=[working_bot()], run_worker=False) if switcher == "other_process" else harness
    await harness.runtime.enqueue("worker", session_id="s", text="go")
    await gate.wait_arrival()

    await other.stack.controls.set("bot", "worker", on=True, reason="incident 42")
    if switcher == "other_process":  # another process's switch reaches this one within controls_refresh_s
        await asyncio.sleep(0.3)
    gate.open()

    reply = await assert_stopped(harness, "s", "kill_switch")
    assert "switched off by an operator (incident 42)" in reply
    assert len(model.requests) == 1  # the step after the tool was never run
    await harness.runtime.enqueue("worker", session_id="s", text="again")
    await assert_stopped(harness, "s", "kill_switch", turns=2)
    assert len(model.requests) == 1

    await other.stack.controls.set("bot", "worker", on=False)
    await asyncio.sleep(0.3)
    await harness.runtime.enqueue("worker", session_id="s", text="back?")
    turns = await harness.wait_turns("s", 3)
    assert turns[-1].status == "completed"


def router_bot(specialist_tools: Sequence[Tool | Agent]) -> Bot:
    specialist = Agent(name="specialist", instructions="Work.", model="small", tools=specialist_tools)
    return Bot(name="router", agent=Agent(name="router", instructions="Route.", model="large", tools=[specialist]))


async def test_an_agent_kill_switch_fails_the_sub_agent_call_and_the_turn_goes_on(make_runtime: MakeRuntime) -> None:
    router = ScriptedModel([call("specialist", request="do it"), "The specialist is unavailable."])
    specialist = ScriptedModel(["never reached"])
    harness = await make_runtime(bots=[router_bot([])], models={"large": router, "small": specialist})
    await harness.stack.controls.set("agent", "specialist", on=True)
    await harness.runtime.enqueue("router", session_id="s", text="go")

    [turn] = await harness.wait_turns("s", 1)
    assert (turn.status, turn.reply) == ("completed", "The specialist is unavailable.")
    assert specialist.requests == []
    tool_result = router.requests[1].messages[-1]
    assert tool_result.role == "tool" and "switched off by an operator" in (tool_result.content or "")


async def test_an_agent_switched_off_mid_call_fails_that_call_and_the_turn_goes_on(make_runtime: MakeRuntime) -> None:
    gate = Gate()
    router = ScriptedModel([call("specialist", request="do it"), "The specialist stopped."])
    specialist = ScriptedModel([call("work"), "never reached"])
    harness = await make_runtime(
        bots=[router_bot(working_bot(gate).agent.tools)], models={"large": router, "small": specialist}
    )
    await harness.runtime.enqueue("router", session_id="s", text="go")
    await gate.wait_arrival()

    await harness.stack.controls.set("agent", "specialist", on=True)
    gate.open()

    [turn] = await harness.wait_turns("s", 1)
    assert (turn.status, turn.reply) == ("completed", "The specialist stopped.")
    assert len(specialist.requests) == 1  # its next step did not run
    tool_result = router.requests[1].messages[-1]
    assert tool_result.role == "tool" and "switched off by an operator" in (tool_result.content or "")


async def test_a_tool_kill_switch_returns_an_error_to_the_model(make_runtime: MakeRuntime) -> None:
    runs: list[str] = []
    model = ScriptedModel([call("work"), "I could not work."])
    harness = await make_runtime(bots=[working_bot(runs=runs)], models={"small": model})
    await harness.stack.controls.set("tool", "work", on=True)
    await harness.runtime.enqueue("worker", session_id="s", text="go")

    [turn] = await harness.wait_turns("s", 1)
    assert (turn.status, turn.reply) == ("completed", "I could not work.")
    assert runs == []
    tool_result = model.requests[1].messages[-1]
    assert tool_result.role == "tool" and "the tool 'work' is switched off" in (tool_result.content or "")


async def test_a_timeout_raised_by_a_model_is_a_failed_attempt_not_the_turns_time_limit(
    make_runtime: MakeRuntime,
) -> None:
    model = ScriptedModel([TimeoutError("read timed out"), echo])
    harness = await make_runtime(models={"small": model}, turn_max_seconds=30)
    await harness.runtime.enqueue("echo", session_id="s", text="hi")

    [turn] = await harness.wait_turns("s", 1)
    assert (turn.status, turn.reply, turn.attempts) == ("completed", "echo: hi", 2)
