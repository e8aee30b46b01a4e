from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from botfactory.errors import ModelResponseError, ModelUnavailableError
from botfactory.inference.base import ModelRequest
from botfactory.inference.openai import OpenAIChatModel, OpenAIProvider
from botfactory.messages import Message, ToolCall, ToolSpec

API_KEY = "sk-test-secret-123"

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A MockTransport handler that answers from a list and records every request body."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def body(self, index: int = -1) -> dict[str, Any]:
        return dict(json.loads(self.requests[index].content))


def ok(message: dict[str, Any], **extra: Any) -> httpx.Response:
    body = {
        "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
        **extra,
    }
    return httpx.Response(200, json=body)


def make_model(handler: Handler, *, max_retries: int = 3, **kwargs: Any) -> tuple[OpenAIChatModel, list[float]]:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    provider = OpenAIProvider(
        "https://llm.example.com/v1/",
        API_KEY,
        timeout_s=5,
        max_retries=max_retries,
        transport=httpx.MockTransport(handler),
        sleep=sleep,
    )
    return OpenAIChatModel("gpt-test", provider, **kwargs), slept


USER = (Message(role="user", content="What is the weather in Paris?"),)


async def test_translates_conversation_with_tool_calls() -> None:
    recorder = Recorder(ok({"content": "It is sunny."}))
    model, _ = make_model(recorder)
    messages = (
        Message(role="system", content="Be brief."),
        Message(role="user", content="Weather in Paris?"),
        Message(role="assistant", tool_calls=(ToolCall(id="c1", name="get_weather", arguments={"city": "Paris"}),)),
        Message(role="tool", content='{"sky": "sunny"}', tool_call_id="c1", name="get_weather"),
    )

    response = await model.complete(ModelRequest(messages=messages, max_tokens=50, temperature=0.2))

    request = recorder.requests[0]
    assert request.url == "https://llm.example.com/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    body = recorder.body()
    assert body["model"] == "gpt-test"
    assert body["max_tokens"] == 50
    assert body["temperature"] == 0.2
    assert "tools" not in body and "response_format" not in body
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": '{"sky": "sunny"}'},
    ]
    assert response.message == Message(role="assistant", content="It is sunny.")
    assert (response.usage.input_tokens, response.usage.output_tokens) == (12, 3)
    assert response.model == "gpt-test"
    assert response.finish_reason == "stop"
    assert response.latency_s >= 0


async def test_native_tools_sent_and_tool_calls_parsed() -> None:
    wire_call = {
        "id": "call_9",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
    }
    recorder = Recorder(ok({"content": None, "tool_calls": [wire_call]}))
    model, _ = make_model(recorder)
    tool = ToolSpec(name="get_weather", description="Weather now.", parameters={"type": "object"})

    response = await model.complete(ModelRequest(messages=USER, tools=(tool,)))

    assert recorder.body()["tools"] == [
        {
            "type": "function",
            "function": {"name": "get_weather", "description": "Weather now.", "parameters": {"type": "object"}},
        }
    ]
    assert response.message.content == ""
    assert response.message.tool_calls == (ToolCall(id="call_9", name="get_weather", arguments={"city": "Oslo"}),)


async def test_response_schema_sent_as_strict_json_schema() -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    recorder = Recorder(ok({"content": '{"answer": "42"}'}))
    model, _ = make_model(recorder, extra_body={"cache_prompt": True})

    response = await model.complete(ModelRequest(messages=USER, response_schema=schema, temperature=None))

    body = recorder.body()
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": schema, "strict": True},
    }
    assert body["cache_prompt"] is True
    assert "temperature" not in body and "max_tokens" not in body
    assert json.loads(response.message.content) == {"answer": "42"}


@pytest.mark.parametrize("arguments", ['{"city": ', "[1, 2]", '"Paris"'])
async def test_bad_tool_arguments_raise_response_error(arguments: str) -> None:
    call = {"id": "c", "type": "function", "function": {"name": "get_weather", "arguments": arguments}}
    model, _ = make_model(Recorder(ok({"content": None, "tool_calls": [call]})))

    with pytest.raises(ModelResponseError, match="get_weather"):
        await model.complete(ModelRequest(messages=USER))


async def test_missing_choices_raise_response_error() -> None:
    model, _ = make_model(Recorder(httpx.Response(200, json={"choices": []})))
    with pytest.raises(ModelResponseError, match="no choices"):
        await model.complete(ModelRequest(messages=USER))


async def test_non_json_body_raises_response_error() -> None:
    model, _ = make_model(Recorder(httpx.Response(200, text="<html>proxy login</html>")))
    with pytest.raises(ModelResponseError, match="other than JSON"):
        await model.complete(ModelRequest(messages=USER))


async def test_retries_429_503_and_connect_error_then_succeeds() -> None:
    recorder = Recorder(
        httpx.Response(429, headers={"Retry-After": "7"}, json={"error": {"message": "slow down"}}),
        httpx.Response(503, text="overloaded"),
        httpx.ConnectError("connection refused"),
        ok({"content": "finally"}),
    )
    model, slept = make_model(recorder)

    response = await model.complete(ModelRequest(messages=USER))

    assert response.message.content == "finally"
    assert len(recorder.requests) == 4
    assert slept[0] == 7.0  # Retry-After honoured
    assert len(slept) == 3 and all(0 < s <= 30 for s in slept)
    assert all(recorder.body(i) == recorder.body(0) for i in range(4))


async def test_exhausted_retries_raise_unavailable_naming_endpoint_only() -> None:
    recorder = Recorder(*(httpx.Response(429, json={"error": {"message": "rate limited"}}) for _ in range(3)))
    model, slept = make_model(recorder, max_retries=2)
    request = ModelRequest(messages=(Message(role="user", content="TOP SECRET PROMPT"),))

    with pytest.raises(ModelUnavailableError) as info:
        await model.complete(request)

    error = info.value
    assert error.retryable
    assert "https://llm.example.com/v1" in error.message
    assert "3 attempts" in error.message and "429" in error.message
    assert API_KEY not in error.message and "TOP SECRET" not in error.message
    assert len(recorder.requests) == 3 and len(slept) == 2


async def test_timeout_is_retried() -> None:
    recorder = Recorder(httpx.ReadTimeout("slow"), ok({"content": "ok"}))
    model, slept = make_model(recorder)
    assert (await model.complete(ModelRequest(messages=USER))).message.content == "ok"
    assert len(slept) == 1


async def test_400_raises_response_error_with_server_message_and_no_retry() -> None:
    body = {"error": {"message": f"context length exceeded for key {API_KEY}: " + "x" * 1000}}
    recorder = Recorder(httpx.Response(400, json=body))
    model, slept = make_model(recorder)

    with pytest.raises(ModelResponseError) as info:
        await model.complete(ModelRequest(messages=USER))

    assert "HTTP 400" in info.value.message and "context length exceeded" in info.value.message
    assert API_KEY not in info.value.message
    assert len(info.value.message) < 500
    assert not info.value.retryable
    assert len(recorder.requests) == 1 and slept == []


async def test_401_never_echoes_server_message() -> None:
    body = {"error": {"message": f"Incorrect API key provided: {API_KEY[:6]}***123"}}
    model, _ = make_model(Recorder(httpx.Response(401, json=body)))
    with pytest.raises(ModelResponseError, match="check api_key") as info:
        await model.complete(ModelRequest(messages=USER))
    assert "sk-tes" not in info.value.message


async def test_no_api_key_sends_no_authorization_header() -> None:
    recorder = Recorder(ok({"content": "hi"}))
    provider = OpenAIProvider(
        "http://127.0.0.1:1/v1", None, timeout_s=5, max_retries=0, transport=httpx.MockTransport(recorder)
    )
    model = OpenAIChatModel("local", provider)
    await model.complete(ModelRequest(messages=USER))
    await model.aclose()
    assert "authorization" not in recorder.requests[0].headers
