"""The OpenAI chat completions wire protocol, for OpenAI itself and every compatible server.

:class:`OpenAIProvider` is one authenticated endpoint (base URL, key, retries, HTTP client);
:class:`OpenAIChatModel` translates :class:`~botfactory.inference.base.ModelRequest` to
``POST /chat/completions`` and the answer back. llama.cpp, vLLM, Ollama and OpenAI all speak it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from typing import Any

import httpx

from botfactory.errors import ModelResponseError
from botfactory.inference._http import AiohttpPoster, HttpxPoster, JsonPoster
from botfactory.inference._retry import RetryPolicy, Sleep, redact_url, send_with_retries
from botfactory.inference.base import Model, ModelProfile, ModelRequest, ModelResponse
from botfactory.messages import Message, ToolCall, ToolSpec, Usage

__all__ = ["OpenAIChatModel", "OpenAIProvider"]


class OpenAIProvider:
    """One OpenAI-compatible endpoint: base URL, optional API key, timeouts and retries.

    Args:
        base_url: API root, e.g. ``https://api.openai.com/v1`` or ``http://127.0.0.1:8091/v1``.
        api_key: Sent as a bearer token; ``None`` for servers without authentication.
        timeout_s: Per-attempt timeout (connecting is capped at 10 s so a dead server fails fast).
        max_retries: Retries of 429, 5xx, connection errors and timeouts.
        transport: An ``httpx`` transport to send through (``httpx.MockTransport`` in tests); by default requests
            go over aiohttp, the cheaper client for the hop to a model server on this machine.
        trust_env: Honour proxy environment variables (never for a loopback ``base_url``).
        sleep: Awaitable sleep used between retries (injectable for tests).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout_s: float = 300.0,
        max_retries: int = 3,
        transport: httpx.AsyncBaseTransport | None = None,
        trust_env: bool = True,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.endpoint = redact_url(self.base_url)
        # A proxy from the environment must never carry calls to a model server on this machine.
        trust_env = trust_env and httpx.URL(self.base_url).host not in _LOOPBACK_HOSTS
        self.retry = RetryPolicy(max_retries, sleep=sleep)
        self._secrets = (api_key,) if api_key else ()
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http: JsonPoster
        if transport is None:
            self._http = AiohttpPoster(self.base_url, headers=headers, timeout_s=timeout_s, trust_env=trust_env)
        else:
            self._http = HttpxPoster(
                self.base_url, headers=headers, timeout_s=timeout_s, trust_env=trust_env, transport=transport
            )

    async def post_json(self, path: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """POST ``payload`` to ``path`` (relative to the base URL) with retries; the JSON object answered.

        Raises:
            ModelUnavailableError: the endpoint stayed unreachable or overloaded.
            ModelResponseError: the endpoint refused the request or answered with something other than a JSON object.
        """
        response = await send_with_retries(
            lambda: self._http.post(path.lstrip("/"), payload),
            endpoint=self.endpoint,
            policy=self.retry,
            secrets=self._secrets,
        )
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ModelResponseError(f"model endpoint {self.endpoint} answered {path} with something other than JSON")
        return body

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._http.aclose()


_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class OpenAIChatModel(Model):
    """A chat model behind ``POST /chat/completions``.

    Args:
        name: The model name the endpoint expects; also reported as ``ModelResponse.model``.
        provider: The endpoint. The model owns it: :meth:`aclose` closes it.
        profile: What the model family does reliably (native tools, structured output).
        extra_body: Extra request fields, e.g. ``{"cache_prompt": True}`` for llama.cpp.
    """

    def __init__(
        self,
        name: str,
        provider: OpenAIProvider,
        *,
        profile: ModelProfile | None = None,
        extra_body: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.provider = provider
        self.profile = profile or ModelProfile()
        self.extra_body = dict(extra_body or {})

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """Run one chat completion (see :meth:`Model.complete`)."""
        started = time.perf_counter()
        data = await self.provider.post_json("chat/completions", self.build_payload(request))
        message, finish_reason = self._parse_choice(data)
        return ModelResponse(
            message=message,
            usage=_usage(data.get("usage")),
            model=self.name,
            latency_s=time.perf_counter() - started,
            finish_reason=finish_reason,
        )

    def build_payload(self, request: ModelRequest) -> dict[str, Any]:
        """The JSON body sent for ``request``."""
        payload: dict[str, Any] = {"model": self.name, "messages": [_message_to_wire(m) for m in request.messages]}
        if request.tools:
            payload["tools"] = [_tool_to_wire(t) for t in request.tools]
            if request.tool_choice == "required":
                payload["tool_choice"] = "required"
        if request.response_schema is not None:
            payload["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "response", "schema": request.response_schema, "strict": True},
            }
        if request.max_tokens is not None:
            payload["max_tokens"] = request.max_tokens
        if request.temperature is not None:
            payload["temperature"] = request.temperature
        payload.update(self.extra_body)
        return payload

    async def aclose(self) -> None:
        """Close the provider's HTTP client."""
        await self.provider.aclose()

    def _parse_choice(self, data: dict[str, Any]) -> tuple[Message, str | None]:
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise self._bad("no choices")
        choice = choices[0]
        wire = choice.get("message")
        if not isinstance(wire, dict):
            raise self._bad("a choice without a message")
        calls = tuple(self._parse_tool_call(i, c) for i, c in enumerate(wire.get("tool_calls") or ()))
        finish = choice.get("finish_reason")
        message = Message(role="assistant", content=_content_text(wire.get("content")), tool_calls=calls)
        return message, finish if isinstance(finish, str) else None

    def _parse_tool_call(self, index: int, wire: Any) -> ToolCall:
        function = wire.get("function") if isinstance(wire, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
            raise self._bad(f"tool call #{index} without a function name")
        name = function["name"]
        raw = function.get("arguments")
        if isinstance(raw, dict):
            arguments: Any = raw
        elif raw is None or (isinstance(raw, str) and not raw.strip()):
            arguments = {}
        else:
            try:
                arguments = json.loads(raw)
            except (TypeError, ValueError):
                raise self._bad(f"tool call '{name}' with arguments that are not valid JSON") from None
        if not isinstance(arguments, dict):
            raise self._bad(f"tool call '{name}' with arguments that are not a JSON object")
        call_id = wire.get("id")
        return ToolCall(
            id=call_id if isinstance(call_id, str) and call_id else f"call_{index}", name=name, arguments=arguments
        )

    def _bad(self, what: str) -> ModelResponseError:
        return ModelResponseError(f"model '{self.name}' at {self.provider.endpoint} answered with {what}")


def _message_to_wire(message: Message) -> dict[str, Any]:
    # ``name`` is not sent: OpenAI restricts it to [A-Za-z0-9_-] and other servers ignore it.
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id or "", "content": message.content}
    wire: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.role == "assistant" and message.tool_calls:
        wire["content"] = message.content or None
        wire["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(call.arguments, ensure_ascii=False)},
            }
            for call in message.tool_calls
        ]
    return wire


def _tool_to_wire(tool: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {"name": tool.name, "description": tool.description, "parameters": tool.parameters},
    }


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _usage(usage: Any) -> Usage:
    if not isinstance(usage, dict):
        return Usage()
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    return Usage(
        input_tokens=prompt if isinstance(prompt, int) else 0,
        output_tokens=completion if isinstance(completion, int) else 0,
    )
