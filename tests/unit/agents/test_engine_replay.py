"""Durable replay: a turn resumed from its recorded steps reaches the same positions and the same reply, and never
runs a recorded step again; the step in flight at the crash re-runs with the same idempotency key."""

from __future__ import annotations

from typing import Any

import pytest

from botfactory.agents import Agent, Engine, Step, ToolContext, TurnInput, tool
from botfactory.errors import StepLimitError
from botfactory.messages import Message
from botfactory.testing import ScriptedModel, call, scripted_inference

tool_calls: list[tuple[str, str]] = []
"""(argument, idempotency key) of every run of the ``act`` tool."""


@tool
def act(item: str, context: ToolContext) -> str:
    """Do something with a side effect.

    Args:
        item: What to act on.
    """
    tool_calls.append((item, context.idempotency_key))
    return f"acted on {item}"


@pytest.fixture(autouse=True)
def _reset() -> None:
    tool_calls.clear()


class Recorder:
    def __init__(self) -> None:
        self.steps: list[Step] = []

    async def record(self, step: Step) -> None:
        self.steps.append(step)


# Positions of the reference turn, in execution order:
#   1 router model -> calls specialist      2 tool: specialist (sub-agent; recorded last, after its steps)
#   3 specialist model -> calls act          4 tool: act (the side effect)
#   5 specialist model -> calls act again    6 tool: act
#   7 specialist model -> answers            8 router model -> final reply
ROUTER_ANSWERS: dict[int, Any] = {1: call("specialist", request="grant a seat"), 8: "Done: the seat is granted."}
SPECIALIST_ANSWERS: dict[int, Any] = {
    3: call("act", item="first"),
    5: call("act", item="second"),
    7: "both acted",
}


def agents() -> Agent:
    specialist = Agent(name="specialist", instructions="Act.", model="small", tools=[act])
    return Agent(name="router", instructions="Route.", model="large", tools=[specialist])


def models(skip: set[int]) -> dict[str, ScriptedModel]:
    """Scripted models holding only the answers of positions not in ``skip``."""
    return {
        "large": ScriptedModel([a for p, a in sorted(ROUTER_ANSWERS.items()) if p not in skip]),
        "small": ScriptedModel([a for p, a in sorted(SPECIALIST_ANSWERS.items()) if p not in skip]),
    }


def turn() -> TurnInput:
    return TurnInput(session_id="s1", turn_id="t1", text="give mona a seat", user_id="u1")


def shown(model: ScriptedModel) -> list[list[tuple[str, str | None, tuple[str, ...]]]]:
    """What each request showed the model: role, content and tool-call names of every message."""
    return [[_message(m) for m in request.messages] for request in model.requests]


def _message(message: Message) -> tuple[str, str | None, tuple[str, ...]]:
    return message.role, message.content, tuple(c.name for c in message.tool_calls)


def _outcome(step: Step) -> Any:
    """A step's result, without the call ids a model makes up anew on each run."""
    if step.kind == "model":
        message = Message.from_dict(step.output["message"])
        return _message(message), [c.arguments for c in message.tool_calls], step.output["usage"]
    return step.output, step.ok


async def reference() -> tuple[str, list[Step], dict[str, ScriptedModel]]:
    scripted = models(set())
    recorder = Recorder()
    result = await Engine(scripted_inference(scripted)).run_turn(agents(), turn(), recorder=recorder)
    return result.reply, recorder.steps, scripted


async def test_reference_turn_records_every_step_once_with_stable_positions() -> None:
    reply, steps, _ = await reference()

    assert reply == "Done: the seat is granted."
    # Recorded as they complete: the sub-agent's call (2) after its own steps, with the last position it used.
    assert [s.position for s in steps] == [1, 3, 4, 5, 6, 7, 2, 8]
    assert {s.position: (s.kind, s.agent_path, s.name) for s in steps} == {
        1: ("model", "router", "large"),
        2: ("tool", "router", "specialist"),
        3: ("model", "router/specialist", "small"),
        4: ("tool", "router/specialist", "act"),
        5: ("model", "router/specialist", "small"),
        6: ("tool", "router/specialist", "act"),
        7: ("model", "router/specialist", "small"),
        8: ("model", "router", "large"),
    }
    assert next(s for s in steps if s.position == 2).output["last_position"] == 7
    assert tool_calls == [("first", "t1:4"), ("second", "t1:6")]


@pytest.mark.parametrize("recorded", range(9))
async def test_resumed_turn_replays_recorded_steps_and_runs_only_the_rest(recorded: int) -> None:
    reply, steps, original = await reference()
    tool_calls.clear()
    replay = steps[:recorded]  # a crash after the first `recorded` steps were stored, e.g. mid-sub-agent
    replayed = {s.position for s in replay}
    scripted = models(replayed)
    recorder = Recorder()

    result = await Engine(scripted_inference(scripted)).run_turn(agents(), turn(), recorder=recorder, replay=replay)

    assert result.reply == reply
    assert result.steps == 8
    # Every position is either replayed or recorded anew, none twice, and each new record matches the original.
    new = {s.position: s for s in recorder.steps}
    assert set(new).isdisjoint({s.position for s in replay})
    assert {s.position for s in replay} | set(new) == {s.position for s in steps}
    originals = {s.position: s for s in steps}
    for position, step in new.items():
        assert (step.kind, step.agent_path, step.name) == (
            originals[position].kind,
            originals[position].agent_path,
            originals[position].name,
        )
        assert _outcome(step) == _outcome(originals[position])
    # Recorded side effects are not repeated; the ones not recorded run again with the key they had.
    expected = [(item, key) for item, key in [("first", "t1:4"), ("second", "t1:6")] if int(key[3:]) not in replayed]
    assert tool_calls == expected
    # The models were asked only for the positions not recorded, and saw exactly what they saw the first time.
    for alias, model in scripted.items():
        assert model.remaining == 0
        assert shown(model) == shown(original[alias])[len(shown(original[alias])) - len(model.requests) :]


async def test_replay_counts_toward_the_step_limit_and_does_not_trip_it() -> None:
    _, steps, _ = await reference()
    scripted = models(set(range(1, 8)))  # everything but the router's last call is recorded

    result = await Engine(scripted_inference(scripted)).run_turn(
        agents(), turn(), replay=steps[:7], max_steps=8, recorder=Recorder()
    )
    assert result.steps == 8

    with pytest.raises(StepLimitError):
        await Engine(scripted_inference(models(set(range(1, 8))))).run_turn(
            agents(), turn(), replay=steps[:7], max_steps=7
        )
    assert tool_calls == [("first", "t1:4"), ("second", "t1:6")]  # from the reference run only
