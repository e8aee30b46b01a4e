"""The turn loop, driven by scripted models: routing, validation feedback, sub-agents, limits, failures."""

from __future__ import annotations

import pytest

from botfactory.agents import (
    Agent,
    AgentFinished,
    Engine,
    Event,
    Step,
    ToolCallFinished,
    ToolCallStarted,
    ToolContext,
    TurnInput,
    tool,
)
from botfactory.errors import StepLimitError, TokenLimitError
from botfactory.messages import Usage
from botfactory.testing import ScriptedModel, call, final, scripted_inference

calls: list[tuple[str, dict[str, object]]] = []


@tool
def get_weather(city: str) -> str:
    """Current weather of a city.

    Args:
        city: City name.
    """
    calls.append(("get_weather", {"city": city}))
    return f"sunny in {city}"


@tool
def get_time(zone: str) -> str:
    """Current time in a time zone."""
    calls.append(("get_time", {"zone": zone}))
    return "12:00"


@tool
def explode() -> str:
    """A tool with a bug."""
    raise RuntimeError("boom")


@pytest.fixture(autouse=True)
def _reset_calls() -> None:
    calls.clear()


def turn(text: str = "hi") -> TurnInput:
    return TurnInput(session_id="s1", turn_id="t1", text=text, user_id="u1")


async def test_model_selects_tool_and_its_result_reaches_the_final_answer() -> None:
    model = ScriptedModel([call("get_weather", city="Oslo"), "It is sunny in Oslo."])
    agent = Agent(name="main", instructions="be helpful", tools=[get_weather, get_time])
    result = await Engine(scripted_inference({"large": model})).run_turn(agent, turn("weather in Oslo?"))

    assert result.reply == "It is sunny in Oslo."
    assert calls == [("get_weather", {"city": "Oslo"})]
    second = model.requests[1].messages
    assert second[-1].role == "tool" and second[-1].content == "sunny in Oslo"
    assert [t.name for t in model.requests[0].tools] == ["get_weather", "get_time"]
    assert result.steps == 3
    assert result.usage == Usage(input_tokens=20, output_tokens=10)


async def test_invalid_arguments_are_fed_back_and_the_model_can_correct_itself() -> None:
    model = ScriptedModel([call("get_weather", town="Oslo"), call("get_weather", city="Oslo"), "done"])
    agent = Agent(name="main", instructions="x", tools=[get_weather])
    result = await Engine(scripted_inference({"large": model})).run_turn(agent, turn())

    feedback = model.requests[1].messages[-1]
    assert feedback.role == "tool"
    assert "invalid arguments for tool 'get_weather'" in feedback.content
    assert "'city' is a required property" in feedback.content
    assert calls == [("get_weather", {"city": "Oslo"})]
    assert result.reply == "done"


async def test_unknown_tool_is_reported_to_the_model() -> None:
    model = ScriptedModel([call("launch_rockets"), "sorry"])
    agent = Agent(name="main", instructions="x", tools=[get_weather])
    await Engine(scripted_inference({"large": model})).run_turn(agent, turn())
    assert "no tool named 'launch_rockets'" in model.requests[1].messages[-1].content
    assert "get_weather" in model.requests[1].messages[-1].content


async def test_a_tool_that_raises_becomes_an_error_result_and_the_turn_continues() -> None:
    model = ScriptedModel([call("explode"), "the tool failed, sorry"])
    agent = Agent(name="main", instructions="x", tools=[explode])
    events: list[Event] = []

    async def collect(event: Event) -> None:
        events.append(event)

    result = await Engine(scripted_inference({"large": model})).run_turn(agent, turn(), on_event=collect)

    error = model.requests[1].messages[-1].content
    assert error.startswith("error: the tool failed (RuntimeError: boom)")
    finished = [e for e in events if isinstance(e, ToolCallFinished)]
    assert len(finished) == 1 and finished[0].ok is False
    assert result.reply == "the tool failed, sorry"


async def test_step_limit_stops_a_looping_agent() -> None:
    model = ScriptedModel([call("get_time", zone="UTC")], cycle=True)
    agent = Agent(name="main", instructions="x", tools=[get_time], max_steps=3)
    with pytest.raises(StepLimitError, match="limit of 3 steps"):
        await Engine(scripted_inference({"large": model})).run_turn(agent, turn())
    assert len(model.requests) == 3
    assert len(calls) == 3


async def test_token_limit_stops_the_turn_before_the_next_model_call() -> None:
    model = ScriptedModel([call("get_time", zone="UTC")], cycle=True, usage=Usage(input_tokens=600, output_tokens=0))
    agent = Agent(name="main", instructions="x", tools=[get_time], max_steps=10)
    with pytest.raises(TokenLimitError, match="over its limit of 1000"):
        await Engine(scripted_inference({"large": model})).run_turn(agent, turn(), max_tokens=1000)
    assert len(model.requests) == 2


def _orchestrator(*, direct: bool) -> tuple[Agent, Agent]:
    specialist = Agent(
        name="weather",
        description="Answers weather questions.",
        instructions="you know the weather",
        model="small",
        tools=[get_weather],
        output_schema={
            "type": "object",
            "properties": {"answer": {"type": "string"}, "sources": {"type": "array", "items": {"type": "string"}}},
            "required": ["answer", "sources"],
        },
        return_direct=direct,
    )
    return Agent(name="main", instructions="route", tools=[specialist]), specialist


async def test_agent_as_tool_runs_with_its_own_model_and_context_and_streams_nested_events() -> None:
    orchestrator, _ = _orchestrator(direct=False)
    large = ScriptedModel([call("weather", request="weather in Paris"), "Paris: sunny (per weather.md)"])
    small = ScriptedModel([call("get_weather", city="Paris"), final("Sunny.", sources=["weather.md"])])
    events: list[Event] = []

    async def collect(event: Event) -> None:
        events.append(event)

    steps: list[Step] = []

    class Recorder:
        async def record(self, step: Step) -> None:
            steps.append(step)

    engine = Engine(scripted_inference({"large": large, "small": small}))
    result = await engine.run_turn(orchestrator, turn("weather in Paris?"), on_event=collect, recorder=Recorder())

    assert result.reply == "Paris: sunny (per weather.md)"
    # the specialist saw only its own system prompt and the request, not the orchestrator's conversation
    first_small = small.requests[0].messages
    assert [m.role for m in first_small] == ["system", "user"]
    assert first_small[1].content == "weather in Paris"
    # its cited answer reached the orchestrator as the tool result
    assert large.requests[1].messages[-1].content == "Sunny.\n\nSources: weather.md"
    nested = [e for e in events if isinstance(e, ToolCallStarted) and e.agent_path == "main/weather"]
    assert [e.tool for e in nested] == ["get_weather"]
    assert [e.agent_path for e in events if isinstance(e, AgentFinished)] == ["main/weather", "main"]
    assert sorted(s.position for s in steps) == [1, 2, 3, 4, 5, 6]
    # positions follow execution order across the agent tree; the sub-agent's steps nest inside its tool step
    assert {s.position: (s.kind, s.name, s.agent_path) for s in steps} == {
        1: ("model", "large", "main"),
        2: ("tool", "weather", "main"),
        3: ("model", "small", "main/weather"),
        4: ("tool", "get_weather", "main/weather"),
        5: ("model", "small", "main/weather"),
        6: ("model", "large", "main"),
    }


async def test_return_direct_specialist_answer_ends_the_turn_verbatim() -> None:
    orchestrator, _ = _orchestrator(direct=True)
    large = ScriptedModel([call("weather", request="Paris")])
    small = ScriptedModel([final("Sunny.", sources=["weather.md", "weather.md"])])
    result = await Engine(scripted_inference({"large": large, "small": small})).run_turn(orchestrator, turn())
    assert result.reply == "Sunny.\n\nSources: weather.md"
    assert len(large.requests) == 1


async def test_subagent_without_request_gets_an_error_not_a_crash() -> None:
    orchestrator, _ = _orchestrator(direct=False)
    large = ScriptedModel([call("weather"), "could not ask"])
    small = ScriptedModel([])
    result = await Engine(scripted_inference({"large": large, "small": small})).run_turn(orchestrator, turn())
    assert "invalid arguments for tool 'weather'" in large.requests[1].messages[-1].content
    assert small.requests == []
    assert result.reply == "could not ask"


async def test_tool_receives_context_with_a_stable_idempotency_key() -> None:
    seen: list[ToolContext] = []

    @tool
    async def grant(user: str, ctx: ToolContext) -> str:
        """Grant something to a user."""
        seen.append(ctx)
        return "granted"

    assert "ctx" not in grant.parameters["properties"]
    model = ScriptedModel([call("grant", user="octocat"), "ok"])
    agent = Agent(name="main", instructions="x", tools=[grant])
    await Engine(scripted_inference({"large": model})).run_turn(agent, turn())
    assert len(seen) == 1
    assert seen[0].idempotency_key == "t1:2"
    assert (seen[0].session_id, seen[0].user_id, seen[0].agent_path) == ("s1", "u1", "main")


async def test_required_tool_choice_applies_to_the_first_call_only() -> None:
    model = ScriptedModel([call("get_time", zone="UTC"), "It is noon."])
    agent = Agent(name="main", instructions="x", tools=[get_time], tool_choice="required")
    result = await Engine(scripted_inference({"large": model})).run_turn(agent, turn())
    assert [r.tool_choice for r in model.requests] == ["required", "auto"]
    assert result.reply == "It is noon."


async def test_prefetch_runs_the_tool_on_the_request_before_the_first_model_call() -> None:
    model = ScriptedModel(["It is sunny in Oslo."])
    agent = Agent(
        name="main", instructions="x", tools=[get_weather, get_time], prefetch=get_weather, tool_choice="required"
    )
    steps: list[Step] = []

    class Recorder:
        async def record(self, step: Step) -> None:
            steps.append(step)

    result = await Engine(scripted_inference({"large": model})).run_turn(agent, turn("Oslo"), recorder=Recorder())

    assert calls == [("get_weather", {"city": "Oslo"})]
    shown = model.requests[0].messages
    assert shown[-2].tool_calls[0].name == "get_weather"
    assert shown[-1].content == "sunny in Oslo"
    # the prefetch counts as using a tool: the model may answer at once
    assert model.requests[0].tool_choice == "auto"
    assert [(s.position, s.kind, s.name) for s in steps] == [(1, "tool", "get_weather"), (2, "model", "large")]
    assert result.reply == "It is sunny in Oslo."


def test_prefetch_must_be_one_of_the_tools_and_take_a_string() -> None:
    with pytest.raises(ValueError, match="must be one of its tools"):
        Agent(name="main", instructions="x", tools=[get_time], prefetch=get_weather)

    @tool
    def count(n: int) -> int:
        """Count."""
        return n

    with pytest.raises(ValueError, match="no required string argument"):
        Agent(name="main", instructions="x", tools=[count], prefetch=count)


async def test_user_message_input_forwards_the_turn_text_verbatim() -> None:
    specialist = Agent(
        name="weather",
        description="Weather.",
        instructions="w",
        model="small",
        tools=[get_weather],
        input="user_message",
    )
    router = Agent(name="main", instructions="route", tools=[specialist], tool_choice="required")
    # the router is offered the specialist with no arguments to write
    assert router.tool_specs()[0].parameters == {"type": "object", "properties": {}, "additionalProperties": False}
    large = ScriptedModel([call("weather"), "done"])
    small = ScriptedModel(["Sunny."])
    result = await Engine(scripted_inference({"large": large, "small": small})).run_turn(
        router, turn("Is it sunny in Oslo?")
    )
    assert small.requests[0].messages[-1].content == "Is it sunny in Oslo?"
    assert result.reply == "done"
