"""What the OpenAI-compatible channel's responses look like, and its operations for the OpenAPI document.

The shapes are the subset of OpenAI's Chat Completions API that botfactory answers with; errors come in OpenAI's
shape, ``{"error": {"message", "type", "param", "code"}}``, a superset of botfactory's ``{"error": {"code",
"message"}}``.
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import BaseModel

from botfactory.channels.openapi import ApiResponse, Operation, QueryParam
from botfactory.inference import ChatCompletionBody

__all__ = ["OPENAI_OPERATIONS"]


class ModelEntry(BaseModel):
    """A bot (``/v1/models``) or a model alias (``/v1/inference/models``), as OpenAI lists models."""

    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(BaseModel):
    """OpenAI's model listing."""

    object: Literal["list"]
    data: list[ModelEntry]


class FunctionCall(BaseModel):
    """The function a tool call names, with its arguments as JSON text."""

    name: str
    arguments: str


class ToolCallOut(BaseModel):
    """A tool call the model made."""

    id: str
    type: Literal["function"]
    function: FunctionCall


class AssistantMessage(BaseModel):
    """The answer: text, or tool calls (``content`` is then null)."""

    role: Literal["assistant"]
    content: str | None
    tool_calls: list[ToolCallOut] | None


class CompletionChoice(BaseModel):
    """The one choice of a completion."""

    index: int
    message: AssistantMessage
    finish_reason: str
    logprobs: None


class CompletionUsage(BaseModel):
    """Tokens of the model calls that made the answer."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    """A ``chat.completion``; with ``stream: true`` the answer comes as ``chat.completion.chunk`` events instead,
    ending with ``data: [DONE]``."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: CompletionUsage


_SESSION = QueryParam(
    name="X-Session-Id",
    location="header",
    description="The session (conversation) to continue; without it, a new one is made.",
)

OPENAI_OPERATIONS: Final[tuple[Operation, ...]] = (
    Operation(
        method="GET",
        path="/v1/models",
        operation_id="openaiListBots",
        summary="The bots, as OpenAI models",
        tag="openai",
        responses={200: ApiResponse(description="The bots.", model=ModelList)},
    ),
    Operation(
        method="POST",
        path="/v1/chat/completions",
        operation_id="openaiChatWithBot",
        summary="Talk to a bot with the OpenAI Chat Completions API",
        description="`model` is the bot, `user` the user id. Only the last user message is sent: the session "
        "holds the history. The message goes through the inbox like any other channel's.",
        tag="openai",
        body=ChatCompletionBody,
        params=(_SESSION,),
        errors=(403, 404, 409, 429, 503),
        responses={
            200: ApiResponse(
                description="The bot's reply (or its chunks).",
                model=ChatCompletion,
                event_stream=True,
                headers={"X-Session-Id": "The session: send it back to continue the conversation."},
            )
        },
    ),
    Operation(
        method="GET",
        path="/v1/inference/models",
        operation_id="openaiListModels",
        summary="The model aliases, as OpenAI models",
        tag="openai",
        responses={200: ApiResponse(description="The model aliases.", model=ModelList)},
    ),
    Operation(
        method="POST",
        path="/v1/inference/chat/completions",
        operation_id="openaiInference",
        summary="Run a model alias with the OpenAI Chat Completions API",
        description="For agents running outside botfactory. `X-Botfactory-Bot` makes the call count against that "
        "bot's budgets (and `user`'s and `X-Session-Id`'s); without it only per-alias statistics count it.",
        tag="openai",
        body=ChatCompletionBody,
        params=(
            _SESSION,
            QueryParam(name="X-Botfactory-Bot", location="header", description="The bot the call is made for."),
        ),
        errors=(403, 404, 429, 502, 503),
        responses={
            200: ApiResponse(description="The answer (or its chunks).", model=ChatCompletion, event_stream=True)
        },
    ),
)
