"""The inference service: model aliases -> models, fallbacks, the tool-calling strategy, and metering.

Engines call :meth:`Inference.complete` with an alias; this is the one boundary every model call crosses.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from botfactory.errors import ModelResponseError, ModelUnavailableError
from botfactory.inference.base import Model, ModelRequest, ModelResponse
from botfactory.inference.structured import describe_tools, parse_choice, plain_messages, protocol_schema
from botfactory.messages import Message, Usage

__all__ = ["AliasStats", "Inference"]

logger = logging.getLogger(__name__)


@dataclass(kw_only=True)
class AliasStats:
    """Running totals for one alias: calls, tokens and time spent."""

    calls: int = 0
    failures: int = 0
    usage: Usage = field(default_factory=Usage)
    latency_s: float = 0.0


class Inference:
    """Routes model calls by alias, with fallbacks, and meters every call.

    Args:
        models: Alias -> model.
        fallbacks: Alias -> aliases to try, in order, when the model is unavailable.
        native_tools: Alias -> force native tool calling on or off, overriding the model's profile.
    """

    def __init__(
        self,
        models: Mapping[str, Model],
        *,
        fallbacks: Mapping[str, Sequence[str]] | None = None,
        native_tools: Mapping[str, bool] | None = None,
    ) -> None:
        self._models = dict(models)
        self._fallbacks = {alias: tuple(chain) for alias, chain in (fallbacks or {}).items()}
        self._native = dict(native_tools or {})
        self.stats: dict[str, AliasStats] = {alias: AliasStats() for alias in self._models}
        for alias, chain in self._fallbacks.items():
            unknown = [a for a in (alias, *chain) if a not in self._models]
            if unknown:
                raise ValueError(f"fallbacks name unknown model aliases: {', '.join(unknown)}")

    @property
    def aliases(self) -> tuple[str, ...]:
        """Every alias this service can serve."""
        return tuple(self._models)

    def model(self, alias: str) -> Model:
        """The model behind an alias."""
        try:
            return self._models[alias]
        except KeyError:
            known = ", ".join(sorted(self._models)) or "none"
            raise ModelResponseError(
                f"no model configured for alias '{alias}' (known: {known}); add [models.{alias}] to botfactory.toml"
            ) from None

    async def complete(self, alias: str, request: ModelRequest) -> ModelResponse:
        """Run a completion on the alias's model, falling back to the next alias while one is unavailable."""
        chain = (alias, *self._fallbacks.get(alias, ()))
        last_error: ModelUnavailableError | None = None
        for candidate in chain:
            model = self.model(candidate)
            stats = self.stats[candidate]
            try:
                response = await self._complete_with(candidate, model, request)
            except ModelUnavailableError as exc:
                stats.failures += 1
                last_error = exc
                logger.warning("alias=<%s>, model=<%s> | model unavailable, trying fallback", candidate, model.name)
                continue
            except Exception:
                stats.failures += 1
                raise
            stats.calls += 1
            stats.usage = stats.usage + response.usage
            stats.latency_s += response.latency_s
            return response
        assert last_error is not None
        raise last_error

    async def aclose(self) -> None:
        """Close every model's connections."""
        for model in self._models.values():
            await model.aclose()

    def _uses_native_tools(self, alias: str, model: Model) -> bool:
        return self._native.get(alias, model.profile.native_tool_calling)

    async def _complete_with(self, alias: str, model: Model, request: ModelRequest) -> ModelResponse:
        # Without tools or a schema there is nothing to constrain: plain text, as an outside caller asked for it.
        if self._uses_native_tools(alias, model) or (not request.tools and request.response_schema is None):
            response = await model.complete(request)
            if request.response_schema is None or response.message.tool_calls:
                return response
            answer = _parse_answer(response.message.content)
            return replace(response, message=Message(role="assistant", content=answer["answer"]), structured=answer)
        required = request.tool_choice == "required"
        note = describe_tools(request.tools, request.response_schema, require_tool=required)
        wire = ModelRequest(
            messages=_with_protocol(plain_messages(request.messages), note),
            response_schema=protocol_schema(request.tools, request.response_schema, require_tool=required),
            max_tokens=request.max_tokens,
            temperature=request.temperature,
        )
        response = await model.complete(wire)
        message, structured = parse_choice(response.message.content, call_id=f"call_{len(request.messages)}")
        return replace(response, message=message, structured=structured)


def _with_protocol(messages: tuple[Message, ...], note: str) -> tuple[Message, ...]:
    if messages and messages[0].role == "system":
        return (Message(role="system", content=messages[0].content + "\n" + note), *messages[1:])
    return (Message(role="system", content=note.strip()), *messages)


def _parse_answer(content: str) -> dict[str, Any]:
    try:
        data = json.loads(content)
    except json.JSONDecodeError:
        return {"answer": content}
    if isinstance(data, dict) and isinstance(data.get("answer"), str):
        return data
    return {"answer": content}
