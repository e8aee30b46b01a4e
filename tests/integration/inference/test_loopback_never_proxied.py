"""A model server on this machine is called directly, whatever proxy the environment names."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from botfactory.inference import OpenAIProvider
from botfactory.testing import run_standin_server

pytestmark = pytest.mark.integration


async def _completion(request: Request) -> Response:
    return JSONResponse({"choices": [{"message": {"role": "assistant", "content": "direct"}}]})


async def test_a_loopback_model_server_is_reached_even_with_a_dead_proxy_in_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # the discard port: nothing answers there
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    server = SimpleNamespace(app=Starlette(routes=[Route("/v1/chat/completions", _completion, methods=["POST"])]))
    with run_standin_server(server) as base_url:
        provider = OpenAIProvider(f"{base_url}/v1", None, max_retries=0)
        try:
            answer = await provider.post_json("chat/completions", {"model": "m", "messages": []})
        finally:
            await provider.aclose()
    assert answer["choices"][0]["message"]["content"] == "direct"
