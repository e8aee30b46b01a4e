"""The model endpoint's default HTTP client (aiohttp) against a real HTTP server on 127.0.0.1.

The unit tests of :class:`OpenAIChatModel` drive the protocol through ``httpx.MockTransport``; these check that the
client botfactory actually uses sends the same request, retries the same failures and reports the same errors.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from botfactory.errors import ModelResponseError, ModelUnavailableError
from botfactory.inference import OpenAIProvider
from botfactory.testing import run_standin_server

pytestmark = pytest.mark.integration

API_KEY = "sk-local-secret-42"


class ScriptedEndpoint:
    """``POST /v1/chat/completions`` answering from a script of (status, body, headers, delay) and recording requests."""

    def __init__(self) -> None:
        self.script: list[tuple[int, bytes, dict[str, str], float]] = []
        self.seen: list[tuple[dict[str, str], Any]] = []
        self.app = Starlette(routes=[Route("/v1/chat/completions", self._answer, methods=["POST"])])

    def then(self, status: int, body: Any, *, headers: dict[str, str] | None = None, delay_s: float = 0.0) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.script.append((status, raw, headers or {}, delay_s))

    async def _answer(self, request: Request) -> Response:
        self.seen.append((dict(request.headers), json.loads(await request.body())))
        status, body, headers, delay_s = self.script.pop(0) if self.script else (500, b"script ran out", {}, 0.0)
        if delay_s:
            await asyncio.sleep(delay_s)
        return Response(body, status_code=status, headers=headers, media_type="application/json")


COMPLETION = {"choices": [{"message": {"role": "assistant", "content": "hi"}}]}


@pytest.fixture
def endpoint() -> Iterator[tuple[ScriptedEndpoint, str]]:
    served = ScriptedEndpoint()
    with run_standin_server(served) as base_url:
        yield served, f"{base_url}/v1"


def provider_for(base_url: str, *, max_retries: int = 2, timeout_s: float = 5.0) -> tuple[OpenAIProvider, list[float]]:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    provider = OpenAIProvider(base_url, API_KEY, timeout_s=timeout_s, max_retries=max_retries, sleep=sleep)
    return provider, slept


async def test_the_request_carries_the_key_and_the_json_body(endpoint: tuple[ScriptedEndpoint, str]) -> None:
    served, base_url = endpoint
    served.then(200, COMPLETION)
    provider, _ = provider_for(base_url)
    try:
        answer = await provider.post_json(
            "chat/completions", {"model": "m", "messages": [{"role": "user", "content": "é"}]}
        )
    finally:
        await provider.aclose()
    assert answer == COMPLETION
    headers, body = served.seen[0]
    assert headers["authorization"] == f"Bearer {API_KEY}"
    assert headers["content-type"] == "application/json"
    assert body == {"model": "m", "messages": [{"role": "user", "content": "é"}]}


async def test_429_is_retried_after_the_time_the_server_asks_for(endpoint: tuple[ScriptedEndpoint, str]) -> None:
    served, base_url = endpoint
    served.then(429, {"error": "slow down"}, headers={"Retry-After": "2"})
    served.then(503, {"error": "busy"})
    served.then(200, COMPLETION)
    provider, slept = provider_for(base_url)
    try:
        answer = await provider.post_json("chat/completions", {"model": "m"})
    finally:
        await provider.aclose()
    assert answer == COMPLETION
    assert len(served.seen) == 3
    assert slept[0] == 2.0
    assert len(slept) == 2


async def test_a_refusal_is_final_and_its_message_never_shows_the_key(endpoint: tuple[ScriptedEndpoint, str]) -> None:
    served, base_url = endpoint
    served.then(400, {"error": {"message": f"bad request for key {API_KEY}"}})
    provider, slept = provider_for(base_url)
    try:
        with pytest.raises(ModelResponseError, match="HTTP 400") as caught:
            await provider.post_json("chat/completions", {"model": "m"})
    finally:
        await provider.aclose()
    assert API_KEY not in str(caught.value)
    assert "***" in str(caught.value)
    assert slept == []
    assert len(served.seen) == 1


async def test_an_answer_that_is_not_json_is_a_response_error(endpoint: tuple[ScriptedEndpoint, str]) -> None:
    served, base_url = endpoint
    served.then(200, b"<html>proxy login</html>")
    provider, _ = provider_for(base_url)
    try:
        with pytest.raises(ModelResponseError, match="something other than JSON"):
            await provider.post_json("chat/completions", {"model": "m"})
    finally:
        await provider.aclose()


async def test_a_slow_answer_times_out_and_is_retried(endpoint: tuple[ScriptedEndpoint, str]) -> None:
    served, base_url = endpoint
    served.then(200, COMPLETION, delay_s=2.0)
    served.then(200, COMPLETION, delay_s=2.0)
    provider, slept = provider_for(base_url, max_retries=1, timeout_s=0.3)
    try:
        with pytest.raises(ModelUnavailableError, match=r"after 2 attempts \(last: \w*Timeout\w* after 0\.\d+s\)"):
            await provider.post_json("chat/completions", {"model": "m"})
    finally:
        await provider.aclose()
    assert len(slept) == 1


async def test_nothing_listening_is_retried_then_reported() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again at once: nothing listens there
    provider, slept = provider_for(f"http://127.0.0.1:{port}/v1", max_retries=2)
    try:
        with pytest.raises(ModelUnavailableError, match=r"after 3 attempts .*ClientConnectorError") as caught:
            await provider.post_json("chat/completions", {"model": "m"})
    finally:
        await provider.aclose()
    assert caught.value.retryable
    assert len(slept) == 2


async def test_a_url_that_is_not_http_fails_at_once_without_retrying() -> None:
    provider, slept = provider_for("ftp://127.0.0.1:1/v1")
    try:
        with pytest.raises(ModelUnavailableError, match=r"cannot be reached .*check base_url") as caught:
            await provider.post_json("chat/completions", {"model": "m"})
    finally:
        await provider.aclose()
    assert not caught.value.retryable
    assert slept == []


def test_a_client_is_bound_to_its_event_loop_until_closed(endpoint: tuple[ScriptedEndpoint, str]) -> None:
    served, base_url = endpoint
    for _ in range(3):
        served.then(200, COMPLETION)
    provider = OpenAIProvider(base_url, None, max_retries=0)

    async def call() -> dict[str, Any]:
        return await provider.post_json("chat/completions", {"model": "m"})

    first = asyncio.new_event_loop()
    try:
        assert first.run_until_complete(call()) == COMPLETION
        with pytest.raises(RuntimeError, match="open in another event loop; await its aclose"):
            asyncio.run(call())
        first.run_until_complete(provider.aclose())
    finally:
        first.close()

    async def call_and_close() -> dict[str, Any]:
        try:
            return await call()
        finally:
            await provider.aclose()

    assert asyncio.run(call_and_close()) == COMPLETION  # closed in its loop: usable again in a new one
    assert asyncio.run(call_and_close()) == COMPLETION
    assert len(served.seen) == 3


async def test_a_server_named_by_proxy_variables_is_used_for_remote_endpoints(
    monkeypatch: pytest.MonkeyPatch, endpoint: tuple[ScriptedEndpoint, str]
) -> None:
    """trust_env: a remote base URL goes through the proxy the environment names (here: the endpoint itself)."""
    served, base_url = endpoint
    served.then(200, COMPLETION)
    proxy = base_url.removesuffix("/v1")
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    provider = OpenAIProvider("http://models.example.internal/v1", None, max_retries=0)
    try:
        answer = await provider.post_json("chat/completions", {"model": "m"})
    finally:
        await provider.aclose()
    assert answer == COMPLETION
    assert served.seen[0][0]["host"] == "models.example.internal"
