"""The served side of the OpenAI wire protocol: request bodies in, completions and chunks out."""

from __future__ import annotations

import json
from typing import Any

import pytest

from botfactory.errors import InvalidFieldError
from botfactory.inference import (
    ModelResponse,
    completion_chunks,
    completion_object,
    last_user_text,
    parse_chat_body,
    to_model_request,
)
from botfactory.messages import Message, ToolCall, ToolSpec, Usage

TOOL = {
    "type": "function",
    "function": {"name": "lookup", "description": "Look up.", "parameters": {"type": "object", "properties": {}}},
}


def body(**fields: Any) -> dict[str, Any]:
    return {"model": "large", "messages": [{"role": "user", "content": "hi"}], **fields}


def refused(data: Any) -> InvalidFieldError:
    with pytest.raises(InvalidFieldError) as caught:
        to_model_request(parse_chat_body(data))
    return caught.value


@pytest.mark.parametrize(
    ("data", "param"),
    [
        ([], None),
        ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
        (body(messages=[]), "messages"),
        (body(messages=[{"role": "robot", "content": "hi"}]), "messages.0.role"),
        (body(messages=[{"role": "user", "content": {"text": "hi"}}]), "messages.0.content"),
        (body(stream="yes"), "stream"),
        (body(temperature=3), "temperature"),
        (body(max_tokens=0), "max_tokens"),
        (body(n=3), "n"),
        (body(tool_choice="sometimes"), "tool_choice"),
        (body(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]), "messages.0.content"),
        (body(response_format={"type": "json_object"}), "response_format.type"),
        (body(tools=[TOOL], tool_choice={"type": "function", "function": {"name": "other"}}), "tool_choice"),
        (body(messages=[{"role": "tool", "content": "x"}]), "messages.0"),
        (
            body(
                messages=[
                    {
                        "role": "assistant",
                        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "[1]"}}],
                    }
                ]
            ),
            "messages.0.tool_calls.0.function.arguments",
        ),
    ],
)
def test_bad_requests_name_the_field(data: Any, param: str | None) -> None:
    error = refused(data)
    assert error.param == param
    assert error.http_status == 400


def test_unknown_fields_are_ignored_and_known_ones_translated() -> None:
    parsed = parse_chat_body(
        body(
            messages=[
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Look "}, {"type": "text", "text": "it up"}]},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "x"}'}}
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "found"}]},
            ],
            tools=[TOOL],
            max_completion_tokens=7,
            max_tokens=99,
            temperature=0,
            top_p=0.5,
            seed=1,
            parallel_tool_calls=False,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    request = to_model_request(parsed)

    assert parsed.include_usage
    assert request.messages == (
        Message(role="system", content="Be brief."),
        Message(role="user", content="Look it up"),
        Message(role="assistant", tool_calls=(ToolCall(id="c1", name="lookup", arguments={"q": "x"}),)),
        Message(role="tool", content="found", tool_call_id="c1"),
    )
    assert request.tools == (
        ToolSpec(name="lookup", description="Look up.", parameters={"type": "object", "properties": {}}),
    )
    assert (request.tool_choice, request.max_tokens, request.temperature) == ("auto", 7, 0.0)


@pytest.mark.parametrize(
    ("choice", "tools", "mode"),
    [
        (None, ["lookup", "other"], "auto"),
        ("auto", ["lookup", "other"], "auto"),
        ("required", ["lookup", "other"], "required"),
        ("none", [], "auto"),
        ({"type": "function", "function": {"name": "other"}}, ["other"], "required"),
    ],
)
def test_tool_choice(choice: Any, tools: list[str], mode: str) -> None:
    other = {"type": "function", "function": {"name": "other"}}
    fields: dict[str, Any] = {"tools": [TOOL, other]}
    if choice is not None:
        fields["tool_choice"] = choice
    request = to_model_request(parse_chat_body(body(**fields)))
    assert [t.name for t in request.tools] == tools
    assert request.tool_choice == mode


def test_a_tool_without_parameters_gets_an_empty_object_schema() -> None:
    request = to_model_request(parse_chat_body(body(tools=[{"type": "function", "function": {"name": "ping"}}])))
    assert request.tools[0].parameters == {"type": "object", "properties": {}}


def test_last_user_text_is_what_a_bot_answers() -> None:
    parsed = parse_chat_body(
        body(
            messages=[
                {"role": "system", "content": "ignored"},
                {"role": "user", "content": "first"},
                {"role": "assistant", "content": "reply"},
                {"role": "user", "content": [{"type": "text", "text": "second"}]},
            ]
        )
    )
    assert last_user_text(parsed) == "second"
    with pytest.raises(InvalidFieldError) as caught:
        last_user_text(parse_chat_body(body(messages=[{"role": "system", "content": "only"}])))
    assert caught.value.param == "messages"


def _tool_answer() -> ModelResponse:
    return ModelResponse(
        message=Message(role="assistant", tool_calls=(ToolCall(id="call_1", name="lookup", arguments={"q": "é"}),)),
        usage=Usage(input_tokens=12, output_tokens=3),
        model="qwen",
        latency_s=0.1,
        finish_reason="stop",
    )


def test_completion_object_of_a_tool_call() -> None:
    completion = completion_object(_tool_answer(), model="large", completion_id="chatcmpl-1", created=5)
    assert completion == {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 5,
        "model": "large",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "lookup", "arguments": json.dumps({"q": "é"}, ensure_ascii=False)},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
    }


def test_completion_object_of_text_keeps_a_length_finish() -> None:
    answer = ModelResponse(
        message=Message(role="assistant", content="cut"), usage=Usage(), model="m", latency_s=0, finish_reason="length"
    )
    completion = completion_object(answer, model="small", completion_id="c", created=1)
    assert completion["choices"][0]["message"] == {"role": "assistant", "content": "cut", "tool_calls": None}
    assert completion["choices"][0]["finish_reason"] == "length"


def test_chunks_carry_text_tool_calls_finish_and_then_usage() -> None:
    chunks = completion_chunks(_tool_answer(), model="large", completion_id="c", created=1, include_usage=True)

    assert [c["object"] for c in chunks] == ["chat.completion.chunk"] * 4
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    call = chunks[1]["choices"][0]["delta"]["tool_calls"][0]
    assert (call["index"], call["id"], call["function"]["name"]) == (0, "call_1", "lookup")
    assert chunks[2]["choices"][0]["finish_reason"] == "tool_calls"
    assert all(c["usage"] is None for c in chunks[:3])
    assert chunks[3]["choices"] == []
    assert chunks[3]["usage"] == {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}


def test_chunks_without_usage_have_no_usage_field() -> None:
    chunks = completion_chunks(_tool_answer(), model="large", completion_id="c", created=1, include_usage=False)
    assert len(chunks) == 3
    assert all("usage" not in c for c in chunks)
