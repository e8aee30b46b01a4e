"""One trace per turn: the channel's span, the inbox wait, the turn, its agent, model and tool spans share a trace id.

The trace is continued from the caller's ``traceparent`` when it sends one, and started at the channel when it
does not; the context travels through the inbox row, so a worker in another process continues the same trace.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import httpx
import pytest
from serving import serving

from botfactory.agents import Agent, Bot, tool
from botfactory.server import Platform
from botfactory.testing import ScriptedModel, call

pytestmark = pytest.mark.integration


@tool
def lookup_seat(login: str) -> str:
    """Whether a GitHub login has a Copilot seat.

    Args:
        login: The GitHub login.
    """
    return f"{login} has no seat"


@pytest.fixture
def traced(platform: Platform) -> Platform:
    """Adds ``seats``: one agent on ``small`` with one tool."""
    platform.bots.add(
        Bot(
            name="seats",
            agent=Agent(name="seats", instructions="Answer with the tool.", model="small", tools=[lookup_seat]),
        )
    )
    return platform


def _script(scripted: dict[str, ScriptedModel]) -> None:
    scripted["small"].script = [call("lookup_seat", login="octocat"), "octocat has no seat yet."]


async def _send(base_url: str, headers: dict[str, str]) -> str:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        sent = await http.post(
            "/v1/bots/seats/sessions/s-trace/messages", json={"text": "does octocat have a seat?"}, headers=headers
        )
        assert sent.status_code == 202, sent.text
        async with asyncio.timeout(20):
            while (await http.get("/v1/sessions/s-trace")).json()["state"] != "idle":  # noqa: ASYNC110 - state is in the store
                await asyncio.sleep(0.05)
        return str(sent.json()["message_id"])


def _by_name(spans: Any) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for span in spans.get_finished_spans():
        found.setdefault(span.name, []).append(span)
    return found


def _turn_spans(by_name: dict[str, list[Any]]) -> list[Any]:
    names = ["inbox wait", "turn seats", "invoke_agent seats", "chat small", "execute_tool lookup_seat"]
    missing = [name for name in names if name not in by_name]
    assert not missing, f"missing spans {missing}; got {sorted(by_name)}"
    return [span for name in names for span in by_name[name]]


async def test_a_callers_traceparent_is_continued_through_the_inbox_to_model_and_tool(
    traced: Platform, scripted: dict[str, ScriptedModel], spans: Any
) -> None:
    _script(scripted)
    trace_id = secrets.token_hex(16)
    traceparent = f"00-{trace_id}-{secrets.token_hex(8)}-01"
    async with serving(traced) as base_url:
        message_id = await _send(base_url, {"traceparent": traceparent})

    by_name = _by_name(spans)
    channel = by_name.get("POST /v1/bots/{bot}/sessions/{session_id}/messages", [])
    assert len(channel) == 1, f"no channel span named by its route; got {sorted(by_name)}"
    assert channel[0].attributes["http.response.status_code"] == 202
    for span in [*channel, *_turn_spans(by_name)]:
        assert f"{span.context.trace_id:032x}" == trace_id, f"{span.name} is in another trace"
    turn = by_name["turn seats"][0]
    assert turn.attributes["gen_ai.conversation.id"] == "s-trace"
    assert by_name["chat small"][0].parent.span_id == by_name["invoke_agent seats"][0].context.span_id
    assert by_name["execute_tool lookup_seat"][0].attributes["gen_ai.tool.name"] == "lookup_seat"
    # The context is stored with the message, so a worker in another process continues the same trace.
    (stored,) = [item for item in await traced.runtime.queue.inbox_items("s-trace") if item.message_id == message_id]
    assert stored.trace_context is not None and trace_id in stored.trace_context["traceparent"]


async def test_without_a_traceparent_the_channel_starts_the_turns_trace(
    traced: Platform, scripted: dict[str, ScriptedModel], spans: Any
) -> None:
    _script(scripted)
    async with serving(traced) as base_url:
        await _send(base_url, {})

    by_name = _by_name(spans)
    channel = [s for s in spans.get_finished_spans() if s.name.startswith("POST /v1/bots")]
    assert len(channel) == 1 and channel[0].parent is None
    trace_ids = {span.context.trace_id for span in _turn_spans(by_name)}
    assert trace_ids == {channel[0].context.trace_id}


async def test_a_malformed_traceparent_starts_a_new_trace_instead_of_failing(
    traced: Platform, scripted: dict[str, ScriptedModel], spans: Any
) -> None:
    _script(scripted)
    async with serving(traced) as base_url:
        await _send(base_url, {"traceparent": "00-not-a-trace-01"})

    turn = _by_name(spans)["turn seats"][0]
    assert turn.context.trace_id != 0 and turn.parent is not None


async def test_reading_the_console_makes_no_spans_but_health_and_api_reads_do_as_before(
    traced: Platform, spans: Any
) -> None:
    async with serving(traced) as base_url, httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        for path in ("/", "/console/sessions", "/console/static/console.css", "/healthz"):
            assert (await http.get(path)).status_code in (200, 303)
        assert (await http.get("/v1/sessions")).status_code == 200

    names = [span.name for span in spans.get_finished_spans()]
    assert names == ["GET /v1/sessions"]  # looking at traces does not make more of them
