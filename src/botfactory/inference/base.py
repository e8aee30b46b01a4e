"""The inference interface: a Model speaks one wire protocol, a Provider is one endpoint, a Profile
records a model family's quirks as data.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Literal

from botfactory.messages import Message, ToolSpec, Usage

__all__ = ["Model", "ModelProfile", "ModelRequest", "ModelResponse"]


@dataclass(frozen=True, kw_only=True)
class ModelProfile:
    """What a model family can and cannot do reliably.

    Attributes:
        native_tool_calling: The endpoint's ``tools`` field produces parseable tool calls.
        structured_output: The endpoint honours ``response_format: json_schema`` (constrained decoding).
    """

    native_tool_calling: bool = True
    structured_output: bool = True


@dataclass(frozen=True, kw_only=True)
class ModelRequest:
    """One chat completion request in provider-neutral form.

    ``tools`` are sent natively (the provider's ``tools`` field). ``response_schema``, when set, asks the
    endpoint to constrain its output to that JSON schema; the answer's ``content`` is then JSON text.
    """

    messages: tuple[Message, ...]
    tools: tuple[ToolSpec, ...] = ()
    response_schema: dict[str, Any] | None = None
    tool_choice: Literal["auto", "required"] = "auto"
    """``required``: the answer must be a tool call (OpenAI's ``tool_choice``; a schema without a final answer
    for constrained JSON)."""
    max_tokens: int | None = None
    temperature: float | None = 0.0


@dataclass(frozen=True, kw_only=True)
class ModelResponse:
    """A model's answer: one assistant message (text and/or tool calls), with metering."""

    message: Message
    usage: Usage
    model: str
    latency_s: float
    finish_reason: str | None = None
    structured: dict[str, Any] | None = None
    """The final answer as an object, when the request asked for a structured answer."""


class Model(ABC):
    """One model behind one wire protocol. Implementations are async and safe to share."""

    name: str
    profile: ModelProfile

    @abstractmethod
    async def complete(self, request: ModelRequest) -> ModelResponse:
        """Run one completion.

        Raises:
            ModelUnavailableError: the endpoint is unreachable or overloaded after all retries.
            ModelResponseError: the endpoint answered with something unusable.
        """

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections. The default holds none."""
