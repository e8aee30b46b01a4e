"""The inference service: constrained-JSON tool calling, native passthrough, fallbacks and metering."""

from __future__ import annotations

import jsonschema
import pytest

from botfactory.errors import ModelResponseError, ModelUnavailableError
from botfactory.inference import Inference, ModelRequest, ScriptedModel, call, final, raw
from botfactory.inference.structured import protocol_schema
from botfactory.messages import Message, ToolCall, ToolSpec, Usage

WEATHER = ToolSpec(
    name="get_weather",
    description="Weather of a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
TIME = ToolSpec(name="get_time", description="Time.", parameters={"type": "object", "properties": {}})


def request(*, tool_choice: str = "auto", schema: dict[str, object] | None = None) -> ModelRequest:
    return ModelRequest(
        messages=(Message(role="system", content="be brief"), Message(role="user", content="weather in Oslo?")),
        tools=(WEATHER, TIME),
        response_schema=schema,
        tool_choice=tool_choice,  # type: ignore[arg-type]
    )


async def test_json_mode_sends_a_schema_and_parses_the_tool_call() -> None:
    model = ScriptedModel([call("get_weather", city="Oslo")], native_tools=False)
    response = await Inference({"small": model}).complete("small", request())

    wire = model.requests[0]
    assert wire.tools == ()
    assert wire.response_schema is not None
    assert wire.messages[0].content.startswith("be brief\n")
    assert "get_weather(city: string): Weather of a city." in wire.messages[0].content
    assert response.message.tool_calls == (ToolCall(id="call_2", name="get_weather", arguments={"city": "Oslo"}),)


async def test_json_mode_final_answer_becomes_content_and_structured() -> None:
    model = ScriptedModel(["Sunny."], native_tools=False)
    response = await Inference({"small": model}).complete("small", request())
    assert response.message.content == "Sunny."
    assert response.structured == {"answer": "Sunny."}


def test_protocol_schema_admits_tool_calls_and_answers_and_rejects_the_rest() -> None:
    schema = protocol_schema([WEATHER, TIME], None)
    jsonschema.validate({"tool": "get_weather", "arguments": {"city": "Oslo"}}, schema)
    jsonschema.validate({"answer": "hi"}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"tool": "get_weather", "arguments": {}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"tool": "launch", "arguments": {}}, schema)


def test_required_tool_schema_has_no_final_answer() -> None:
    schema = protocol_schema([WEATHER, TIME], None, require_tool=True)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"answer": "I made it up"}, schema)
    jsonschema.validate({"tool": "get_time", "arguments": {}}, schema)


async def test_required_tool_choice_reaches_the_wire_schema() -> None:
    model = ScriptedModel([call("get_time")], native_tools=False)
    await Inference({"small": model}).complete("small", request(tool_choice="required"))
    schema = model.requests[0].response_schema
    assert schema is not None
    assert all("tool" in branch["properties"] for branch in schema["anyOf"])
    assert "You must call one of the tools." in model.requests[0].messages[0].content


async def test_invalid_json_from_the_model_is_a_model_response_error() -> None:
    model = ScriptedModel([raw("not json")], native_tools=False)
    with pytest.raises(ModelResponseError, match="invalid JSON"):
        await Inference({"small": model}).complete("small", request())


async def test_native_mode_passes_tools_through_and_parses_a_structured_answer() -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    model = ScriptedModel([final("ok", sources=["a.md"])], native_tools=True)
    response = await Inference({"large": model}).complete("large", request(schema=schema))
    assert model.requests[0].tools == (WEATHER, TIME)
    assert response.structured == {"answer": "ok", "sources": ["a.md"]}
    assert response.message.content == "ok"


async def test_fallback_is_used_while_the_primary_is_unavailable_and_calls_are_metered() -> None:
    primary = ScriptedModel([ModelUnavailableError("down")], name="primary")
    backup = ScriptedModel(["hello"], name="backup", usage=Usage(input_tokens=7, output_tokens=3))
    inference = Inference({"large": primary, "small": backup}, fallbacks={"large": ["small"]})
    response = await inference.complete("large", ModelRequest(messages=(Message(role="user", content="hi"),)))
    assert response.message.content == "hello"
    assert inference.stats["large"].failures == 1
    assert inference.stats["small"].calls == 1
    assert inference.stats["small"].usage == Usage(input_tokens=7, output_tokens=3)


async def test_unknown_alias_names_the_known_ones() -> None:
    with pytest.raises(ModelResponseError, match=r"alias 'huge' \(known: large\)"):
        await Inference({"large": ScriptedModel([])}).complete("huge", request())


def test_fallbacks_must_name_known_aliases() -> None:
    with pytest.raises(ValueError, match="unknown model aliases: tiny"):
        Inference({"large": ScriptedModel([])}, fallbacks={"large": ["tiny"]})


async def test_json_mode_without_tools_or_schema_asks_for_plain_text() -> None:
    model = ScriptedModel(["Sunny."], native_tools=False)
    response = await Inference({"small": model}).complete(
        "small", ModelRequest(messages=(Message(role="user", content="weather?"),), max_tokens=1)
    )
    assert model.requests[0].response_schema is None
    assert model.requests[0].max_tokens == 1
    assert response.message.content == "Sunny."
    assert response.structured is None
