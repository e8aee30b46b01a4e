"""Trace context and baggage leave botfactory with every call to a remote A2A agent.

Bot ``front`` has one tool, a remote A2A agent (:class:`A2AAgents`): bot ``remote`` of the same platform, served
over A2A by a real uvicorn server on 127.0.0.1. A small ASGI middleware in front of the served app records the
headers of every A2A request, which is all a remote agent can learn the trace from. The remote bot's own turn then
continues the caller's trace, so one trace covers both bots.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from propagation_helpers import FlatEmbedder, HeaderRecorder

from botfactory.agents import Agent, Bot
from botfactory.config import Settings
from botfactory.gateway import A2AAgents
from botfactory.server import Platform, create_app
from botfactory.testing import ScriptedModel, call, scripted_inference, serve_app

pytest.importorskip("a2a.client", reason="the a2a extra is not installed")
pytest.importorskip("sse_starlette", reason="the a2a extra is not installed")

pytestmark = pytest.mark.integration


@pytest.fixture
def scripted() -> dict[str, ScriptedModel]:
    """``small`` answers for ``front``, ``large`` for ``remote``."""
    return {"large": ScriptedModel([], name="large"), "small": ScriptedModel([], name="small")}


@pytest.fixture
async def platform(tmp_path: Path, scripted: dict[str, ScriptedModel]) -> AsyncIterator[Platform]:
    settings = Settings.load(
        home=tmp_path, github_org="example-org", runtime={"poll_s": 0.1, "max_attempts": 1, "backoff_base_s": 0.0}
    )
    started = await Platform.start(settings, inference=scripted_inference(scripted), embedder=FlatEmbedder())
    started.bots.add(
        Bot(name="remote", agent=Agent(name="remote", instructions="Answer questions.", model="large")),
    )
    try:
        yield started
    finally:
        await started.aclose()


@pytest.fixture
async def served(platform: Platform) -> AsyncIterator[tuple[HeaderRecorder, str, str]]:
    """The platform served as `botfactory serve` does, behind the recorder: ``(recorder, base URL, API key)``."""
    key = (await platform.api_keys.create(bot=None)).secret
    recorder = HeaderRecorder(
        create_app(platform, auth="keys"), lambda method, path: method == "POST" and path.startswith("/a2a/")
    )
    async with serve_app(recorder) as base_url:
        yield recorder, base_url, key


@pytest.fixture
async def front(platform: Platform, served: tuple[HeaderRecorder, str, str]) -> AsyncIterator[A2AAgents]:
    """Bot ``front``, whose one tool is bot ``remote`` reached over A2A."""
    _, base_url, key = served
    peers = A2AAgents("peers", url=f"{base_url}/a2a/remote", headers={"X-Api-Key": key}, timeout_s=30)
    await peers.start()
    platform.bots.add(
        Bot(name="front", agent=Agent(name="front", instructions="Ask remote.", model="small", tools=[peers]))
    )
    try:
        yield peers
    finally:
        await peers.aclose()


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


def _traceparent(headers: dict[str, str]) -> tuple[str, str]:
    """``(trace id, parent span id)`` of a request's ``traceparent``."""
    assert "traceparent" in headers, f"no traceparent among {sorted(headers)}"
    _, trace_id, parent_id, _ = headers["traceparent"].split("-")
    return trace_id, parent_id


async def test_the_remote_agent_gets_the_turns_trace_and_continues_it(
    platform: Platform,
    front: A2AAgents,
    served: tuple[HeaderRecorder, str, str],
    scripted: dict[str, Any],
    spans: Any,
) -> None:
    recorder, _, _ = served
    scripted["small"].script = [call("remote", request="Is the build green?"), "Remote says: green"]
    scripted["large"].script = ["green"]

    result = await platform.runtime.invoke("front", session_id="front-1", text="is the build green?")

    assert (result.status, result.reply) == ("completed", "Remote says: green")
    [headers] = recorder.calls
    trace_id, parent_id = _traceparent(headers)
    turn = await _span(spans, "turn front")
    tool = await _span(spans, "execute_tool remote")
    assert trace_id == f"{turn.context.trace_id:032x}"
    assert parent_id == f"{tool.context.span_id:016x}"  # the remote agent's work hangs under the tool call
    remote_turn = await _span(spans, "turn remote")  # the remote bot continued the trace through its own inbox
    assert f"{remote_turn.context.trace_id:032x}" == trace_id


async def test_the_callers_baggage_reaches_the_remote_agent(
    platform: Platform,
    front: A2AAgents,
    served: tuple[HeaderRecorder, str, str],
    scripted: dict[str, Any],
    spans: Any,
) -> None:
    recorder, base_url, key = served
    scripted["small"].script = [call("remote", request="Which tenant?"), "Done"]
    scripted["large"].script = ["acme"]

    async with httpx.AsyncClient(base_url=base_url, trust_env=False, timeout=30) as http:
        response = await http.post(
            "/v1/bots/front/invoke",
            json={"session_id": "front-2", "text": "which tenant am I?"},
            headers={"X-Api-Key": key, "baggage": "tenant=acme"},
        )

    assert response.status_code == 200, response.text
    channel = await _span(spans, "POST /v1/bots/{bot}/invoke")
    [headers] = recorder.calls  # the call to /v1/bots/front/invoke is not an A2A call
    trace_id, _ = _traceparent(headers)
    assert trace_id == f"{channel.context.trace_id:032x}"  # one trace from the HTTP channel to the remote agent
    assert "baggage" in headers, f"no baggage among {sorted(headers)}"
    assert "tenant=acme" in headers["baggage"].split(",")
