"""The OpenAI-compatible endpoints, driven by the official ``openai`` client against a real server on 127.0.0.1."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import openai
import pytest
from serving import serving

from botfactory.agents import Agent, Bot
from botfactory.config import BudgetSettings
from botfactory.messages import Message, ToolCall
from botfactory.runtime import utc_day
from botfactory.server import Platform
from botfactory.testing import ScriptedModel, call

pytestmark = pytest.mark.integration

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture
async def base_url(platform: Platform) -> AsyncIterator[str]:
    async with serving(platform) as url:
        yield url


@pytest.fixture
async def api_key(platform: Platform) -> str:
    """A key for every bot: the openai client always sends one, and a key that is sent is checked."""
    return (await platform.api_keys.create(bot=None)).secret


@pytest.fixture
async def bots(base_url: str, api_key: str) -> AsyncIterator[openai.AsyncOpenAI]:
    """A client of the bot endpoint; no retries, so a refused request is seen once."""
    async with openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key=api_key, max_retries=0) as client:
        yield client


@pytest.fixture
async def models(base_url: str, api_key: str) -> AsyncIterator[openai.AsyncOpenAI]:
    """A client of the inference endpoint."""
    async with openai.AsyncOpenAI(base_url=f"{base_url}/v1/inference", api_key=api_key, max_retries=0) as client:
        yield client


# The bot endpoint


async def test_bot_completion_answers_with_the_reply_and_a_session_to_continue(
    bots: openai.AsyncOpenAI, platform: Platform, scripted: dict[str, ScriptedModel]
) -> None:
    scripted["large"].script = ["Hello! How can I help?"]
    raw = await bots.chat.completions.with_raw_response.create(
        model="support", messages=[{"role": "user", "content": "hi"}], user="u-42"
    )
    completion = raw.parse()

    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "support"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "Hello! How can I help?"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (10, 5)
    session_id = raw.headers["x-session-id"]
    session = await platform.runtime.session(session_id)
    assert session.session.user_id == "u-42"
    first = session.messages[0]
    assert (first.role, first.text, first.user_id) == ("user", "hi", "u-42")


async def test_the_session_header_continues_a_conversation(
    bots: openai.AsyncOpenAI, scripted: dict[str, ScriptedModel]
) -> None:
    scripted["large"].script = ["first answer", "second answer"]
    headers = {"X-Session-Id": "oa-session-1"}
    first = await bots.chat.completions.with_raw_response.create(
        model="support", messages=[{"role": "user", "content": "one"}], extra_headers=headers
    )
    # Clients resend the whole conversation; the bot takes only the last user message (the session has the rest).
    second = await bots.chat.completions.create(
        model="support",
        messages=[
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": "first answer"},
            {"role": "user", "content": [{"type": "text", "text": "two"}]},
        ],
        extra_headers=headers,
    )

    assert first.headers["x-session-id"] == "oa-session-1"
    assert second.choices[0].message.content == "second answer"
    seen = scripted["large"].requests[1].messages
    assert [(m.role, m.content) for m in seen[1:]] == [("user", "one"), ("assistant", "first answer"), ("user", "two")]


async def test_bot_completion_streams_the_reply_as_chunks(
    bots: openai.AsyncOpenAI, scripted: dict[str, ScriptedModel]
) -> None:
    scripted["large"].script = ["Streamed hello."]
    stream = await bots.chat.completions.create(
        model="support",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]

    assert stream.response.headers["x-session-id"]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Streamed hello."
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 15


async def test_unknown_bot_is_a_not_found_error(bots: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await bots.chat.completions.create(model="nobody", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == "model_not_found"
    assert "nobody" in caught.value.message


async def test_bad_bodies_are_bad_request_errors_naming_the_field(bots: openai.AsyncOpenAI, platform: Platform) -> None:
    cases = [
        ({"messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
        ({"messages": [{"role": "system", "content": "be brief"}]}, "messages"),
        ({"messages": [{"role": "user", "content": "hi"}], "n": 2}, "n"),
        ({"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}, "temperature"),
    ]
    for fields, param in cases:
        with pytest.raises(openai.BadRequestError) as caught:
            await bots.chat.completions.create(model="support", **fields)
        assert caught.value.param == param, caught.value.message
        assert caught.value.type == "invalid_request_error"
    assert await platform.runtime.list_sessions() == []  # nothing was queued


async def test_unknown_request_fields_are_ignored(bots: openai.AsyncOpenAI, scripted: dict[str, ScriptedModel]) -> None:
    scripted["large"].script = ["ok"]
    completion = await bots.chat.completions.create(
        model="support",
        messages=[{"role": "user", "content": "hi"}],
        temperature=0.2,
        max_tokens=50,
        extra_body={"a_field_from_the_future": {"x": 1}},
    )
    assert completion.choices[0].message.content == "ok"


async def test_a_used_up_budget_is_a_rate_limit_error(bots: openai.AsyncOpenAI, platform: Platform) -> None:
    platform.bots.get("support").budgets = BudgetSettings(bot_daily_tokens=0)
    with pytest.raises(openai.RateLimitError) as caught:
        await bots.chat.completions.create(model="support", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == "budget_exceeded"
    assert "budget" in caught.value.message
    assert caught.value.response.headers["x-should-retry"] == "false"  # the client must not queue it again


async def test_a_turn_error_after_the_stream_started_is_raised_by_the_client(
    bots: openai.AsyncOpenAI, platform: Platform
) -> None:
    platform.bots.get("support").budgets = BudgetSettings(bot_daily_tokens=0)
    stream = await bots.chat.completions.create(
        model="support", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    with pytest.raises(openai.APIError, match="budget"):
        async for _ in stream:
            pass


async def test_models_lists_the_bots(bots: openai.AsyncOpenAI, platform: Platform) -> None:
    listed = [model.id async for model in bots.models.list()]
    assert listed == [bot.name for bot in platform.bots]


# The inference endpoint


async def test_inference_completion_runs_the_alias_model(
    models: openai.AsyncOpenAI, scripted: dict[str, ScriptedModel]
) -> None:
    scripted["small"].script = ["Paris."]
    completion = await models.chat.completions.create(
        model="small",
        messages=[{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Capital of France?"}],
        max_tokens=5,
        temperature=0,
    )

    assert completion.choices[0].message.content == "Paris."
    assert completion.model == "small"
    assert completion.usage is not None and completion.usage.total_tokens == 15
    request = scripted["small"].requests[0]
    assert [(m.role, m.content) for m in request.messages] == [
        ("system", "Answer briefly."),
        ("user", "Capital of France?"),
    ]
    assert (request.max_tokens, request.temperature) == (5, 0.0)
    assert scripted["large"].requests == []


async def test_inference_tool_call_round_trip(models: openai.AsyncOpenAI, scripted: dict[str, ScriptedModel]) -> None:
    scripted["large"].script = [call("get_weather", city="Paris"), "It is sunny in Paris."]
    question = {"role": "user", "content": "Weather in Paris?"}
    first = await models.chat.completions.create(model="large", messages=[question], tools=[WEATHER_TOOL])

    assert first.choices[0].finish_reason == "tool_calls"
    tool_calls = first.choices[0].message.tool_calls
    assert tool_calls is not None and len(tool_calls) == 1
    tool_call = tool_calls[0]
    assert tool_call.type == "function"
    assert tool_call.function.name == "get_weather"
    assert json.loads(tool_call.function.arguments) == {"city": "Paris"}
    assert scripted["large"].requests[0].tools[0].name == "get_weather"

    final = await models.chat.completions.create(
        model="large",
        messages=[
            question,
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": tool_call.id, "content": "sunny, 24 C"},
        ],
        tools=[WEATHER_TOOL],
    )
    assert final.choices[0].message.content == "It is sunny in Paris."
    assert final.choices[0].finish_reason == "stop"
    seen = scripted["large"].requests[1].messages
    assert seen[1] == Message(
        role="assistant", tool_calls=(ToolCall(id=tool_call.id, name="get_weather", arguments={"city": "Paris"}),)
    )
    assert seen[2] == Message(role="tool", content="sunny, 24 C", tool_call_id=tool_call.id)


async def test_inference_streams_tool_call_deltas_and_a_usage_chunk(
    models: openai.AsyncOpenAI, scripted: dict[str, ScriptedModel]
) -> None:
    scripted["large"].script = [call("get_weather", city="Oslo")]
    stream = await models.chat.completions.create(
        model="large",
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
        tools=[WEATHER_TOOL],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]

    deltas = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or ()]
    assert [(d.index, d.function.name if d.function else None) for d in deltas] == [(0, "get_weather")]
    assert deltas[0].function is not None and json.loads(deltas[0].function.arguments or "") == {"city": "Oslo"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (10, 5)


async def test_inference_unknown_alias_is_a_not_found_error(models: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await models.chat.completions.create(model="huge", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == "model_not_found"
    assert "large" in caught.value.message and "small" in caught.value.message


async def test_inference_lists_the_aliases(models: openai.AsyncOpenAI) -> None:
    assert sorted([model.id async for model in models.models.list()]) == ["large", "small"]


async def test_inference_for_a_bot_is_metered_and_refused_once_its_budget_is_used(
    models: openai.AsyncOpenAI, platform: Platform, scripted: dict[str, ScriptedModel]
) -> None:
    platform.bots.get("support").budgets = BudgetSettings(bot_daily_tokens=15)
    scripted["small"].script = ["first", "never sent"]
    headers = {"X-Botfactory-Bot": "support", "X-Session-Id": "agent-run-1"}
    messages = [{"role": "user", "content": "hi"}]
    await models.chat.completions.create(model="small", messages=messages, user="u-7", extra_headers=headers)

    day = utc_day(time.time())
    used = await platform.runtime.queue.usage(
        [("bot", "support", day), ("session", "agent-run-1", ""), ("user", "u-7", day), ("model", "small", day)]
    )
    assert {key: tokens for key, (tokens, _) in used.items()} == {
        ("bot", "support", day): 15,
        ("session", "agent-run-1", ""): 15,
        ("user", "u-7", day): 15,
        ("model", "small", day): 15,
    }
    counted = {
        direction: platform.metrics.registry.get_sample_value(
            "botfactory_model_tokens_total",
            {"bot": "support", "model": "small", "user": "u-7", "direction": direction},
        )
        for direction in ("in", "out")
    }
    assert counted == {"in": 10.0, "out": 5.0}  # GET /metrics shows inference calls made for a bot too

    with pytest.raises(openai.RateLimitError) as caught:
        await models.chat.completions.create(model="small", messages=messages, extra_headers=headers)
    assert caught.value.code == "budget_exceeded"
    assert "15 of 15 tokens" in caught.value.message
    assert len(scripted["small"].requests) == 1  # refused before the model was called


async def test_inference_without_a_bot_is_counted_per_alias_only(
    models: openai.AsyncOpenAI, platform: Platform, scripted: dict[str, ScriptedModel]
) -> None:
    platform.bots.get("support").budgets = BudgetSettings(bot_daily_tokens=0)
    scripted["small"].script = ["free"]
    await models.chat.completions.create(model="small", messages=[{"role": "user", "content": "hi"}])
    assert platform.inference.stats["small"].calls == 1
    assert platform.inference.stats["small"].usage.total_tokens == 15


async def test_inference_refuses_an_unknown_bot_header_and_unsupported_fields(models: openai.AsyncOpenAI) -> None:
    messages = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.BadRequestError) as caught:
        await models.chat.completions.create(
            model="small",
            messages=messages,
            extra_headers={"X-Botfactory-Bot": "nobody"},
        )
    assert caught.value.param == "X-Botfactory-Bot"
    with pytest.raises(openai.BadRequestError) as caught:
        await models.chat.completions.create(
            model="small",
            messages=messages,
            response_format={"type": "json_object"},
        )
    assert caught.value.param == "response_format.type"


async def test_a_strands_agent_uses_the_inference_endpoint_as_its_model(
    base_url: str, api_key: str, scripted: dict[str, ScriptedModel]
) -> None:
    from strands import Agent, tool
    from strands.models.openai import OpenAIModel

    @tool
    def get_weather(city: str) -> str:
        """The weather in a city.

        Args:
            city: The city.
        """
        return f"sunny in {city}"

    scripted["large"].script = [call("get_weather", city="Lima"), "It is sunny in Lima."]
    model = OpenAIModel(
        client_args={"base_url": f"{base_url}/v1/inference", "api_key": api_key, "max_retries": 0},
        model_id="large",
    )
    agent = Agent(model=model, tools=[get_weather], callback_handler=None)
    result = await agent.invoke_async("What is the weather in Lima?")

    assert "It is sunny in Lima." in str(result)
    second = scripted["large"].requests[1]
    assert [t.name for t in second.tools] == ["get_weather"]
    tool_result = next(m for m in second.messages if m.role == "tool")
    assert "sunny in Lima" in tool_result.content
    assert result.metrics.accumulated_usage["totalTokens"] == 30


async def test_a_key_for_one_bot_reaches_only_that_bot_and_meters_its_inference_calls(
    base_url: str, platform: Platform, scripted: dict[str, ScriptedModel]
) -> None:
    platform.bots.add(Bot(name="other", agent=Agent(name="other", instructions="Answer.")))
    key = (await platform.api_keys.create(bot="support")).secret
    scripted["small"].script = ["counted"]
    hi = [{"role": "user", "content": "hi"}]
    async with (
        openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key=key, max_retries=0) as bots,
        openai.AsyncOpenAI(base_url=f"{base_url}/v1/inference", api_key=key, max_retries=0) as models,
    ):
        with pytest.raises(openai.PermissionDeniedError):
            await bots.chat.completions.create(model="other", messages=hi)
        assert [model.id async for model in bots.models.list()] == ["support"]
        with pytest.raises(openai.PermissionDeniedError):
            await models.chat.completions.create(
                model="small",
                messages=hi,
                extra_headers={"X-Botfactory-Bot": "other"},
            )
        # without the header, the call counts against the key's bot
        await models.chat.completions.create(model="small", messages=hi)
    used = await platform.runtime.queue.usage([("bot", "support", utc_day(time.time()))])
    assert list(used.values()) == [(15, 0.0)]
