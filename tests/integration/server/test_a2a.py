"""Bots served as A2A agents, and remote A2A agents as tools, both through the official ``a2a-sdk`` client.

A real uvicorn server on a free loopback port serves the platform; the SDK's client reads each bot's agent card and
sends it messages; the scripted models answer. At the end one bot calls another through A2A (``A2AAgents``).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from serving import serving

from botfactory.agents import Agent, Bot
from botfactory.errors import MissingExtraError, ToolError, ToolUnavailableError
from botfactory.gateway import A2AAgents, CallContext
from botfactory.server import Platform
from botfactory.testing import ScriptedModel, call

pytest.importorskip("a2a.client", reason="the a2a extra is not installed")
pytest.importorskip("sse_starlette", reason="the a2a extra is not installed")

from a2a.client import A2ACardResolver, A2AClientError, ClientConfig, ClientFactory
from a2a.helpers import get_stream_response_text, new_text_part
from a2a.types import Message, Role, SendMessageRequest, StreamResponse
from a2a.utils.errors import InvalidParamsError

pytestmark = pytest.mark.integration


@pytest.fixture
async def served(platform: Platform) -> AsyncIterator[str]:
    """The platform served with API keys required, as `botfactory serve` does; yields the base URL."""
    async with serving(platform, auth="keys") as base_url:
        yield base_url


async def _send(
    base_url: str, bot: str, text: str, *, key: str, context_id: str = "", streaming: bool = False
) -> list[StreamResponse]:
    """Send ``text`` to ``bot`` with the SDK's client, as any A2A client would: card first, then the message."""
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
        card = await A2ACardResolver(http, f"{base_url}/a2a/{bot}").get_agent_card()
        client = ClientFactory(ClientConfig(httpx_client=http, streaming=streaming)).create(card)
        message = Message(
            role=Role.ROLE_USER, message_id=f"m-{text}", context_id=context_id, parts=[new_text_part(text)]
        )
        return [response async for response in client.send_message(SendMessageRequest(message=message))]


def _context(session_id: str = "s-1", key: str = "k-1") -> CallContext:
    return CallContext(
        session_id=session_id, turn_id="t-1", bot="caller", agent_path="caller", user_id=None, idempotency_key=key
    )


async def test_the_agent_card_is_public_and_describes_the_bot(served: str) -> None:
    async with httpx.AsyncClient() as http:  # no key: A2A clients discover how to authenticate from the card
        card = await A2ACardResolver(http, f"{served}/a2a/support").get_agent_card()
        missing = await http.get(f"{served}/a2a/nobody/.well-known/agent-card.json")

    assert card.name == "support"
    assert card.description
    assert [(i.url, i.protocol_binding) for i in card.supported_interfaces] == [(f"{served}/a2a/support", "JSONRPC")]
    assert set(card.security_schemes) == {"bearer", "apiKey"}
    assert [skill.id for skill in card.skills] == ["support"]
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "bot_not_found"


async def test_a_message_gets_the_bots_reply_in_the_session_of_its_context(
    served: str, platform: Platform, scripted: dict[str, ScriptedModel]
) -> None:
    key = (await platform.api_keys.create(bot="support")).secret
    scripted["large"].script = ["Hello over A2A", "Still here"]

    first = await _send(served, "support", "hi", key=key, context_id="ctx-1")
    second = await _send(served, "support", "again", key=key, context_id="ctx-1", streaming=True)

    assert [r.WhichOneof("payload") for r in first] == ["message"]
    reply = first[0].message
    assert (get_stream_response_text(first[0]), reply.role, reply.context_id) == (
        "Hello over A2A",
        Role.ROLE_AGENT,
        "ctx-1",
    )
    assert reply.metadata["session_id"] == "a2a:support:ctx-1" and reply.metadata["status"] == "completed"
    assert [get_stream_response_text(r) for r in second] == ["Still here"]
    messages = await platform.store.list_messages("a2a:support:ctx-1")
    assert [(m.role, m.text) for m in messages] == [
        ("user", "hi"),
        ("assistant", "Hello over A2A"),
        ("user", "again"),
        ("assistant", "Still here"),
    ]


async def test_a_retried_message_is_answered_once(
    served: str, platform: Platform, scripted: dict[str, ScriptedModel]
) -> None:
    key = (await platform.api_keys.create(bot=None)).secret
    scripted["large"].script = ["only once"]

    first = await _send(served, "support", "same", key=key, context_id="ctx-r")
    retry = await _send(served, "support", "same", key=key, context_id="ctx-r")

    assert [get_stream_response_text(r) for r in first + retry] == ["only once", "only once"]
    assert len(scripted["large"].requests) == 1


async def test_without_a_key_or_with_another_bots_key_the_call_is_refused(
    served: str, platform: Platform, scripted: dict[str, ScriptedModel]
) -> None:
    platform.bots.add(Bot(name="echo", agent=Agent(name="echo", instructions="Repeat.", model="small")))
    other = (await platform.api_keys.create(bot="echo")).secret
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "SendMessage",
        "params": {"message": {"role": "ROLE_USER", "messageId": "m1", "parts": [{"text": "hi"}]}},
    }
    async with httpx.AsyncClient() as http:
        anonymous = await http.post(f"{served}/a2a/support", json=body)
        wrong_bot = await http.post(f"{served}/a2a/support", json=body, headers={"X-Api-Key": other})

    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "unauthenticated"
    assert wrong_bot.status_code == 403 and wrong_bot.json()["error"]["code"] == "forbidden"
    with pytest.raises(A2AClientError, match="401"):
        await _send(served, "support", "hi", key="bf_not-a-real-key")
    assert scripted["large"].requests == []


async def test_a_v03_client_is_answered_on_message_send(
    served: str, platform: Platform, scripted: dict[str, ScriptedModel]
) -> None:
    key = (await platform.api_keys.create(bot="support")).secret
    scripted["large"].script = ["hello, old client"]
    body: dict[str, Any] = {
        "jsonrpc": "2.0",
        "id": "r1",
        "method": "message/send",
        "params": {
            "message": {
                "kind": "message",
                "role": "user",
                "messageId": "m-old",
                "contextId": "ctx-old",
                "parts": [{"kind": "text", "text": "hi"}],
            }
        },
    }
    async with httpx.AsyncClient(headers={"X-Api-Key": key}, timeout=30) as http:
        response = await http.post(f"{served}/a2a/support", json=body)

    result = response.json()["result"]
    assert result["parts"] == [{"kind": "text", "text": "hello, old client"}]
    assert result["role"] == "agent" and result["contextId"] == "ctx-old"


async def test_an_empty_message_is_an_invalid_params_error(served: str, platform: Platform) -> None:
    key = (await platform.api_keys.create(bot="support")).secret
    with pytest.raises(InvalidParamsError, match="no text"):
        await _send(served, "support", " ", key=key)


async def test_one_bot_calls_another_through_a2a(
    served: str, platform: Platform, scripted: dict[str, ScriptedModel]
) -> None:
    key = (await platform.api_keys.create(bot="support")).secret
    peers = A2AAgents("peers", url=f"{served}/a2a/support", headers={"X-Api-Key": key}, timeout_s=30)
    await peers.start()
    try:
        [tool] = peers.tools
        assert (tool.name, tool.parameters["required"], tool.side_effect) == ("support", ["request"], "write")
        assert tool.description.startswith(platform.bots.get("support").description)

        platform.bots.add(
            Bot(name="front", agent=Agent(name="front", instructions="Ask support.", model="small", tools=[peers]))
        )
        scripted["small"].script = [call("support", request="How do I reset a password?"), "Support says: reset it"]
        scripted["large"].script = ["Use the reset link."]
        result = await platform.runtime.invoke("front", session_id="front-1", text="password help?")

        assert (result.status, result.reply) == ("completed", "Support says: reset it")
        tool_results = [m.content for m in scripted["small"].requests[1].messages if m.role == "tool"]
        assert tool_results == ["Use the reset link."]
        assert scripted["large"].requests[0].messages[-1].content == "How do I reset a password?"
        [session] = [s for s in await platform.runtime.list_sessions(bot="support") if s.id.startswith("a2a:support:")]
        assert session.id != "a2a:support:front-1"  # the caller's session id does not leak to the remote agent
    finally:
        await peers.aclose()


async def test_the_tool_maps_remote_failures_to_tool_errors(served: str, platform: Platform) -> None:
    no_key = A2AAgents("nokey", url=f"{served}/a2a/support", timeout_s=30)
    await no_key.start()  # the card is public
    try:
        with pytest.raises(ToolError, match="HTTP 401"):
            await no_key.tools[0].invoke({"request": "hi"}, _context())
    finally:
        await no_key.aclose()

    key = (await platform.api_keys.create(bot="support")).secret
    keyed = A2AAgents("keyed", url=f"{served}/a2a/support", headers={"X-Api-Key": key})
    await keyed.start()
    try:
        with pytest.raises(ToolError, match="no text"):
            await keyed.tools[0].invoke({"request": "   "}, _context())
    finally:
        await keyed.aclose()

    with pytest.raises(ToolUnavailableError, match="cannot read the agent card"):
        await A2AAgents("missing", url=f"{served}/a2a/nobody").start()


def test_without_the_extra_both_sides_name_it(monkeypatch: pytest.MonkeyPatch, platform: Platform) -> None:
    from botfactory.channels import a2a_routes
    from botfactory.gateway import a2a_client

    for name in [n for n in sys.modules if n == "a2a" or n.startswith("a2a.")]:
        monkeypatch.setitem(sys.modules, name, None)  # what an installation without the extra looks like
    monkeypatch.delitem(sys.modules, "botfactory.channels._a2a_server", raising=False)
    monkeypatch.setattr(a2a_client, "_loaded", [])

    with pytest.raises(MissingExtraError, match=r"botfactory\[a2a\]"):
        a2a_routes(platform.runtime)
    with pytest.raises(MissingExtraError, match=r"botfactory\[a2a\]"):
        asyncio.run(A2AAgents("peers", url="http://127.0.0.1:1/a2a/x").start())
