"""The OpenAI chat completions wire protocol, served: requests in, answers and stream chunks out.

:mod:`botfactory.inference.openai` is the client side (botfactory calling an OpenAI-compatible server); this is the
server side, for ``POST /v1/inference/chat/completions`` (external agents using botfactory's model aliases) and
``POST /v1/chat/completions`` (clients talking to a bot). It validates a request body, translates it to a
:class:`~botfactory.inference.base.ModelRequest`, and renders a :class:`~botfactory.inference.base.ModelResponse` as a
``chat.completion`` object or as ``chat.completion.chunk`` objects. Unknown request fields are ignored, as OpenAI
clients add fields over time; fields of the wrong type are refused with :class:`~botfactory.errors.InvalidFieldError`.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from botfactory.errors import InvalidFieldError
from botfactory.inference.base import ModelRequest, ModelResponse
from botfactory.inference.openai import _message_to_wire
from botfactory.messages import Message, ToolCall, ToolSpec, Usage

__all__ = [
    "ChatCompletionBody",
    "WireMessage",
    "chat_chunk",
    "completion_chunks",
    "completion_object",
    "last_user_text",
    "new_completion_id",
    "openai_error",
    "parse_chat_body",
    "to_model_request",
    "usage_object",
]

_FINISH_REASONS: Final = frozenset({"stop", "length", "tool_calls", "content_filter"})
_FIELD: Final = re.compile(r"[a-z][a-z_]*")
_TYPE_TAGS: Final = frozenset({"str", "int", "float", "bool", "none"})


class _Body(BaseModel):
    """Unknown fields are ignored (clients add fields over time); known ones must have the right JSON type."""

    model_config = ConfigDict(extra="ignore", strict=True)


class ContentPart(_Body):
    """One part of a message's content list; only ``text`` parts are understood."""

    type: str
    text: str | None = None


class WireFunctionCall(_Body):
    """The function an earlier tool call named, with its arguments (JSON text, as OpenAI sends them)."""

    name: str = Field(min_length=1, max_length=256)
    arguments: str | dict[str, Any] = ""


class WireToolCall(_Body):
    """A tool call of an earlier assistant message."""

    id: str = Field(min_length=1, max_length=256)
    type: Literal["function"] = "function"
    function: WireFunctionCall


class WireMessage(_Body):
    """One message of ``messages``, as OpenAI clients send it."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    tool_calls: list[WireToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None


class FunctionDefinition(_Body):
    """A function the model may call: its name, description and JSON schema of arguments."""

    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    parameters: dict[str, Any] | None = None


class ToolDefinition(_Body):
    """A tool the model may call (only functions)."""

    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(_Body):
    """The function a named tool choice forces."""

    name: str


class NamedToolChoice(_Body):
    """``tool_choice`` naming the one function the model must call."""

    type: Literal["function"]
    function: NamedFunction


class StreamOptions(_Body):
    """``include_usage``: end a stream with a chunk that carries the token usage."""

    include_usage: bool = False


class ResponseFormat(_Body):
    """Only ``text`` is supported."""

    type: str


class ChatCompletionBody(_Body):
    """A ``POST .../chat/completions`` body. Fields botfactory does not use (``top_p``, ``seed``, ...) are ignored.

    ``model`` is a bot's name on ``/v1/chat/completions`` and a model alias on ``/v1/inference/chat/completions``.
    """

    model: str = Field(min_length=1, max_length=256)
    messages: list[WireMessage] = Field(min_length=1)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    n: int | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    tools: list[ToolDefinition] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    response_format: ResponseFormat | None = None
    user: str | None = Field(default=None, min_length=1, max_length=256)

    @property
    def include_usage(self) -> bool:
        """Whether a streamed answer ends with a chunk carrying the usage (``stream_options.include_usage``)."""
        return self.stream_options is not None and self.stream_options.include_usage


def parse_chat_body(data: Any) -> ChatCompletionBody:
    """Validate a decoded request body.

    Raises:
        InvalidFieldError: not an object, a field of the wrong type or out of range, or ``n`` other than 1;
            ``param`` names the first bad field.
    """
    if not isinstance(data, dict):
        raise InvalidFieldError('the request body must be a JSON object like {"model": "...", "messages": [...]}')
    try:
        body = ChatCompletionBody.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        # pydantic adds the union member it tried to the path ("content.str"); OpenAI's param is the field's path.
        param = ".".join(str(p) for p in first["loc"] if not _is_union_tag(p)) or None
        raise InvalidFieldError(f"invalid request: {param or 'body'}: {first['msg']}", param=param) from None
    if body.n not in (None, 1):
        raise InvalidFieldError("only n=1 is supported: one choice per request", param="n")
    return body


def _is_union_tag(part: Any) -> bool:
    # Field names are snake_case; union tags are type names ("str", "list[ContentPart]", "NamedToolChoice").
    return isinstance(part, str) and (part in _TYPE_TAGS or not _FIELD.fullmatch(part))


def to_model_request(body: ChatCompletionBody) -> ModelRequest:
    """The provider-neutral request for a validated body.

    ``developer`` messages count as ``system``. ``tool_choice: none`` sends no tools; a named function sends only
    that tool and requires it.

    Raises:
        InvalidFieldError: non-text content, tool call arguments that are not a JSON object, a named tool choice
            that names no tool, or a ``response_format`` other than ``text``.
    """
    messages = tuple(_message(i, m) for i, m in enumerate(body.messages))
    tools = tuple(
        ToolSpec(
            name=t.function.name,
            description=t.function.description or "",
            parameters=t.function.parameters or {"type": "object", "properties": {}},
        )
        for t in body.tools or ()
    )
    tool_choice: Literal["auto", "required"] = "auto"
    choice = body.tool_choice
    if choice == "none":
        tools = ()
    elif choice == "required":
        tool_choice = "required"
    elif isinstance(choice, NamedToolChoice):
        tools = tuple(t for t in tools if t.name == choice.function.name)
        if not tools:
            raise InvalidFieldError(
                f"tool_choice names the function {choice.function.name!r}, which is not in tools", param="tool_choice"
            )
        tool_choice = "required"
    if body.response_format is not None and body.response_format.type != "text":
        raise InvalidFieldError(
            f"response_format {body.response_format.type!r} is not supported yet; ask for JSON in the prompt instead",
            param="response_format.type",
        )
    return ModelRequest(
        messages=messages,
        tools=tools,
        tool_choice=tool_choice,
        max_tokens=body.max_completion_tokens or body.max_tokens,
        temperature=body.temperature,
    )


def _message(index: int, wire: WireMessage) -> Message:
    content = _text(wire.content, param=f"messages.{index}.content")
    if wire.role == "tool":
        if not wire.tool_call_id:
            raise InvalidFieldError("a tool message needs the tool_call_id it answers", param=f"messages.{index}")
        return Message(role="tool", content=content, tool_call_id=wire.tool_call_id)
    if wire.role == "assistant":
        calls = tuple(_tool_call(index, j, c) for j, c in enumerate(wire.tool_calls or ()))
        return Message(role="assistant", content=content, tool_calls=calls)
    return Message(role="system" if wire.role == "developer" else wire.role, content=content)


def _tool_call(index: int, position: int, wire: WireToolCall) -> ToolCall:
    raw = wire.function.arguments
    if isinstance(raw, dict):
        arguments: Any = raw
    elif not raw.strip():
        arguments = {}
    else:
        try:
            arguments = json.loads(raw)
        except ValueError:
            arguments = None
    if not isinstance(arguments, dict):
        raise InvalidFieldError(
            f"the arguments of tool call {wire.id!r} are not a JSON object",
            param=f"messages.{index}.tool_calls.{position}.function.arguments",
        )
    return ToolCall(id=wire.id, name=wire.function.name, arguments=arguments)


def _text(content: str | list[ContentPart] | None, *, param: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    texts: list[str] = []
    for part in content:
        if part.type != "text" or part.text is None:
            raise InvalidFieldError(f"only text content is supported, not {part.type!r} parts", param=param)
        texts.append(part.text)
    return "".join(texts)


def last_user_text(body: ChatCompletionBody) -> str:
    """The text of the last ``user`` message: what a bot answers (the session holds everything before it).

    Raises:
        InvalidFieldError: no user message, or one with non-text content.
    """
    for index in range(len(body.messages) - 1, -1, -1):
        message = body.messages[index]
        if message.role == "user":
            return _text(message.content, param=f"messages.{index}.content")
    raise InvalidFieldError("messages has no user message: send the user's text as the last one", param="messages")


def new_completion_id() -> str:
    """A fresh ``chatcmpl-...`` id for one answer."""
    return f"chatcmpl-{uuid.uuid4().hex}"


def usage_object(usage: Usage) -> dict[str, int]:
    """Token usage in OpenAI's form."""
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
    }


def _finish_reason(response: ModelResponse) -> str:
    if response.message.tool_calls:
        return "tool_calls"
    reason = response.finish_reason
    return reason if reason in _FINISH_REASONS else "stop"


def completion_object(
    response: ModelResponse, *, model: str, completion_id: str, created: int | None = None
) -> dict[str, Any]:
    """A ``chat.completion`` object for an answer; ``model`` is the name the caller asked for."""
    message = _message_to_wire(response.message)
    message.setdefault("tool_calls", None)
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": _finish_reason(response), "logprobs": None}],
        "usage": usage_object(response.usage),
    }


def chat_chunk(
    *,
    completion_id: str,
    created: int,
    model: str,
    delta: dict[str, Any] | None = None,
    finish_reason: str | None = None,
    usage: Usage | None = None,
    include_usage: bool = False,
) -> dict[str, Any]:
    """One ``chat.completion.chunk``. With ``usage`` it is the final usage chunk (no choices)."""
    chunk: dict[str, Any] = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model}
    if usage is not None:
        chunk["choices"] = []
        chunk["usage"] = usage_object(usage)
        return chunk
    chunk["choices"] = [{"index": 0, "delta": delta or {}, "finish_reason": finish_reason, "logprobs": None}]
    if include_usage:  # OpenAI sends "usage": null on every chunk but the last when usage was asked for
        chunk["usage"] = None
    return chunk


def completion_chunks(
    response: ModelResponse, *, model: str, completion_id: str, created: int, include_usage: bool
) -> list[dict[str, Any]]:
    """An answer as the chunks of a stream: the text, each tool call, the finish reason, then (if asked) usage."""

    def chunk(**fields: Any) -> dict[str, Any]:
        return chat_chunk(
            completion_id=completion_id, created=created, model=model, include_usage=include_usage, **fields
        )

    message = response.message
    chunks = [chunk(delta={"role": "assistant", "content": message.content})]
    for index, call in enumerate(message.tool_calls):
        wire = {
            "index": index,
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": json.dumps(call.arguments, ensure_ascii=False)},
        }
        chunks.append(chunk(delta={"tool_calls": [wire]}))
    chunks.append(chunk(finish_reason=_finish_reason(response)))
    if include_usage:
        chunks.append(chat_chunk(completion_id=completion_id, created=created, model=model, usage=response.usage))
    return chunks


def openai_error(message: str, *, type: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    """An error body in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}
