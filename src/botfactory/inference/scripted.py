"""A model that replays a fixed script: deterministic engine tests, and zero-latency benchmarks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from botfactory.errors import ModelResponseError
from botfactory.inference.base import Model, ModelProfile, ModelRequest, ModelResponse
from botfactory.messages import Message, ToolCall, Usage

__all__ = ["ScriptItem", "ScriptedModel", "call", "final", "raw"]


@dataclass(frozen=True, kw_only=True)
class _Final:
    answer: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class _Raw:
    content: str


def raw(content: str, /) -> _Raw:
    """Content returned exactly as given, e.g. malformed JSON to test error handling."""
    return _Raw(content=content)


def call(name: str, /, **arguments: Any) -> ToolCall:
    """A scripted tool call, e.g. ``call("search_docs", query="vault")``."""
    return ToolCall(id="", name=name, arguments=arguments)


def final(answer: str, /, **extra: Any) -> _Final:
    """A scripted structured final answer, e.g. ``final("Rotate with...", sources=["docs/vault.md"])``."""
    return _Final(answer={"answer": answer, **extra})


ScriptItem: TypeAlias = (
    "str | ToolCall | _Final | _Raw | BaseException | Callable[[ModelRequest], str | ToolCall | _Final]"
)


class ScriptedModel(Model):
    """Replays a list of answers in order: text, tool calls, structured answers, raw content, or errors to raise.

    Text becomes a final answer in whatever form the request asks for (plain, or ``{"answer": ...}`` JSON when
    a schema is requested); ``call(...)`` becomes a native tool call or the constrained-JSON form; ``raw(...)``
    is returned verbatim.

    Each request is recorded in :attr:`requests` so tests can assert what the model was shown.

    Args:
        script: The answers, in call order. A callable receives the request and returns an answer.
        name: Model name reported in responses and metrics.
        native_tools: The profile's ``native_tool_calling``; with ``False`` the inference layer uses the
            constrained-JSON protocol and this model answers with JSON text, as a local model would.
        usage: Token usage reported for every call (default 10 input, 5 output).
        cycle: Start again from the top when the script is exhausted (benchmarks).
        latency_s: Simulated latency per call.
    """

    def __init__(
        self,
        script: Iterable[ScriptItem],
        *,
        name: str = "scripted",
        native_tools: bool = True,
        usage: Usage | None = None,
        cycle: bool = False,
        latency_s: float = 0.0,
    ) -> None:
        self.name = name
        self.profile = ModelProfile(native_tool_calling=native_tools, structured_output=True)
        self.script: list[ScriptItem] = list(script)
        self.requests: list[ModelRequest] = []
        self._usage = usage or Usage(input_tokens=10, output_tokens=5)
        self._cycle = cycle
        self._latency_s = latency_s
        self._position = 0

    @property
    def remaining(self) -> int:
        """How many scripted answers have not been used yet."""
        return len(self.script) - self._position

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """Return the next scripted answer."""
        self.requests.append(request)
        if self._position >= len(self.script):
            if not self._cycle or not self.script:
                raise ModelResponseError(
                    f"scripted model {self.name!r} ran out of answers after {self._position} calls"
                )
            self._position = 0
        item = self.script[self._position]
        self._position += 1
        if self._latency_s:
            await asyncio.sleep(self._latency_s)
        if isinstance(item, BaseException):
            raise item
        if callable(item):
            item = item(request)
        return ModelResponse(
            message=self._message(item, request), usage=self._usage, model=self.name, latency_s=self._latency_s
        )

    def _message(self, item: str | ToolCall | _Final | _Raw, request: ModelRequest) -> Message:
        json_mode = request.response_schema is not None and not self.profile.native_tool_calling
        if isinstance(item, ToolCall):
            if json_mode:
                return Message(role="assistant", content=json.dumps({"tool": item.name, "arguments": item.arguments}))
            call_id = item.id or f"call_{len(self.requests)}"
            return Message(
                role="assistant", tool_calls=(ToolCall(id=call_id, name=item.name, arguments=item.arguments),)
            )
        if isinstance(item, _Raw):
            return Message(role="assistant", content=item.content)
        if isinstance(item, _Final):
            return Message(role="assistant", content=json.dumps(item.answer))
        if json_mode or request.response_schema is not None:
            return Message(role="assistant", content=json.dumps({"answer": item}))
        return Message(role="assistant", content=item)
