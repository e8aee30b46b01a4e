"""Trace context and baggage reach an external agent app (the AgentCore runtime contract) through every hop.

A request to the HTTP API goes through the channel's server span, the inbox row, a worker and the engine to a
:class:`ContractAgent`'s app, written with the real ``bedrock-agentcore`` SDK and served on 127.0.0.1. A small ASGI
middleware in front of the app records the headers of each ``/invocations`` call: the app has no other way to learn
the trace or the caller's W3C ``baggage`` than these headers.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from propagation_helpers import FlatEmbedder, HeaderRecorder

from botfactory.agents import Bot, ContractAgent
from botfactory.config import Settings
from botfactory.server import Platform, create_app
from botfactory.testing import ScriptedModel, scripted_inference, serve_app

pytest.importorskip("bedrock_agentcore", reason="the agentcore extra is not installed")

from bedrock_agentcore.runtime import BedrockAgentCoreApp

pytestmark = pytest.mark.integration


def contract_app() -> BedrockAgentCoreApp:
    """An agent app that echoes the prompt."""
    app = BedrockAgentCoreApp()

    @app.entrypoint
    async def handler(payload: dict[str, Any]) -> dict[str, Any]:
        return {"result": f"app: {payload.get('prompt')}"}

    return app


@pytest.fixture
async def app() -> AsyncIterator[tuple[HeaderRecorder, str]]:
    """The agent app on a free loopback port: ``(recorder, base URL)``."""
    recorder = HeaderRecorder(contract_app(), lambda method, path: path == "/invocations")
    async with serve_app(recorder) as base_url:
        yield recorder, base_url


@pytest.fixture
async def platform(tmp_path: Path, app: tuple[HeaderRecorder, str]) -> AsyncIterator[Platform]:
    """A platform with bot ``ext``, whose agent is the app."""
    settings = Settings.load(
        home=tmp_path, github_org="example-org", runtime={"poll_s": 0.1, "max_attempts": 1, "backoff_base_s": 0.0}
    )
    models = {"large": ScriptedModel([], name="large"), "small": ScriptedModel([], name="small")}
    started = await Platform.start(settings, inference=scripted_inference(models), embedder=FlatEmbedder())
    agent = ContractAgent(name="ext", url=app[1], timeout_s=30)
    started.bots.add(Bot(name="ext", agent=agent))
    try:
        yield started
    finally:
        await agent.aclose()
        await started.aclose()


async def _invoke(platform: Platform, headers: dict[str, str]) -> httpx.Response:
    async with (
        serve_app(create_app(platform, auth="local")) as base_url,
        httpx.AsyncClient(base_url=base_url, trust_env=False, timeout=30) as http,
    ):
        return await http.post("/v1/bots/ext/invoke", json={"session_id": "ext-1", "text": "hello"}, headers=headers)


async def _span(spans: Any, name: str) -> Any:
    """The one finished span called ``name``, waiting for it: a reply can arrive before its spans have ended."""
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        found = [span for span in spans.get_finished_spans() if span.name == name]
        if len(found) == 1:
            return found[0]
        if len(found) > 1 or asyncio.get_running_loop().time() > deadline:
            names = sorted({span.name for span in spans.get_finished_spans()})
            raise AssertionError(f"expected one span {name!r}; got {names}")
        await asyncio.sleep(0.02)


async def test_the_app_continues_the_turns_trace_and_gets_the_callers_baggage(
    platform: Platform, app: tuple[HeaderRecorder, str], spans: Any
) -> None:
    recorder, _ = app

    response = await _invoke(platform, {"baggage": "tenant=acme"})

    assert response.status_code == 200, response.text
    assert response.json()["reply"] == "app: hello"
    channel = await _span(spans, "POST /v1/bots/{bot}/invoke")
    turn = await _span(spans, "turn ext")
    agent = await _span(spans, "invoke_agent ext")
    [headers] = recorder.calls
    _, trace_id, parent_id, _ = headers["traceparent"].split("-")
    assert trace_id == f"{turn.context.trace_id:032x}" == f"{channel.context.trace_id:032x}"
    assert parent_id == f"{agent.context.span_id:016x}"  # the app's spans hang under the agent's span
    assert "baggage" in headers, f"no baggage among {sorted(headers)}"  # lost in the inbox row or the worker
    assert "tenant=acme" in headers["baggage"].split(",")


async def test_a_callers_traceparent_and_baggage_both_arrive(
    platform: Platform, app: tuple[HeaderRecorder, str], spans: Any
) -> None:
    recorder, _ = app
    trace_id = secrets.token_hex(16)

    response = await _invoke(
        platform,
        {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01", "baggage": "tenant=acme,region=eu-west"},
    )

    assert response.status_code == 200, response.text
    turn = await _span(spans, "turn ext")
    [headers] = recorder.calls
    assert headers["traceparent"].split("-")[1] == trace_id == f"{turn.context.trace_id:032x}"
    assert set(headers.get("baggage", "").split(",")) >= {"tenant=acme", "region=eu-west"}


async def test_without_baggage_the_app_gets_none(platform: Platform, app: tuple[HeaderRecorder, str]) -> None:
    recorder, _ = app

    response = await _invoke(platform, {})

    assert response.status_code == 200, response.text
    [headers] = recorder.calls
    assert "traceparent" in headers and "baggage" not in headers
