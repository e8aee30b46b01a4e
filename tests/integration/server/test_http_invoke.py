"""The HTTP invoke endpoint: replies, streaming, persistence, and bad input answered with a clear 4xx."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from serving import serving

from botfactory.cli.chat import chat_remote, server_is_up
from botfactory.errors import BotfactoryError
from botfactory.server import Platform, create_app
from botfactory.testing import ScriptedModel, call

pytestmark = pytest.mark.integration


@pytest.fixture
async def client(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(platform))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


async def test_invoke_returns_the_reply_and_persists_the_turn(
    client: httpx.AsyncClient, platform: Platform, scripted: dict[str, ScriptedModel]
) -> None:
    scripted["large"].script = ["Hello! How can I help?"]
    response = await client.post("/v1/bots/support/invoke", json={"session_id": "s-1", "text": "hi", "user_id": "u1"})

    assert response.status_code == 200
    body = response.json()
    assert body["reply"] == "Hello! How can I help?"
    assert body["status"] == "completed"
    turn = await platform.store.get_turn(body["turn_id"])
    assert turn.status == "completed"
    assert turn.reply == "Hello! How can I help?"
    messages = await platform.store.list_messages("s-1")
    assert [(m.role, m.text) for m in messages] == [("user", "hi"), ("assistant", "Hello! How can I help?")]


async def test_second_turn_sees_the_session_history(
    client: httpx.AsyncClient, scripted: dict[str, ScriptedModel]
) -> None:
    scripted["large"].script = ["first answer", "second answer"]
    await client.post("/v1/bots/support/invoke", json={"session_id": "s-2", "text": "one"})
    await client.post("/v1/bots/support/invoke", json={"session_id": "s-2", "text": "two"})
    second = scripted["large"].requests[1].messages
    assert [(m.role, m.content) for m in second[1:]] == [
        ("user", "one"),
        ("assistant", "first answer"),
        ("user", "two"),
    ]


async def test_streaming_invoke_sends_events_then_the_reply(
    client: httpx.AsyncClient, scripted: dict[str, ScriptedModel]
) -> None:
    from botfactory.testing import final

    # the router picks the knowledge specialist, which searches the real docs before answering
    scripted["large"].script = [
        call("knowledge"),
        final("Run the rotation command.", sources=["docs/vault/rotate-api-keys.md"]),
    ]
    response = await client.post(
        "/v1/bots/support/invoke?stream=true", json={"session_id": "s-3", "text": "how do I rotate vault keys?"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    frames = [f for f in response.text.split("\n\n") if f.strip()]
    names = [f.split("\n")[0].removeprefix("event: ") for f in frames]
    assert names[-1] == "reply"
    events = [json.loads(f.split("\n")[1].removeprefix("data: ")) for f in frames[:-1]]
    nested = [e for e in events if e["type"] == "tool_call_started" and e["agent_path"] == "support/knowledge"]
    assert nested[0]["tool"] == "search_docs"
    assert nested[0]["arguments"] == {"query": "how do I rotate vault keys?"}
    passages = scripted["large"].requests[1].messages[-1].content
    assert "[source: docs/vault/rotate-api-keys.md]" in passages
    reply = json.loads(frames[-1].split("\n")[1].removeprefix("data: "))
    assert reply["reply"] == "Run the rotation command.\n\nSources: docs/vault/rotate-api-keys.md"


@pytest.mark.parametrize(
    ("path", "body", "status", "code", "message"),
    [
        ("/v1/bots/nope/invoke", {"session_id": "s", "text": "hi"}, 404, "bot_not_found", "no bot named 'nope'"),
        ("/v1/bots/support/invoke", {"session_id": "s", "text": "   "}, 400, "invalid_input", "text is empty"),
        ("/v1/bots/support/invoke", {"session_id": "s"}, 400, "invalid_input", "text: Field required"),
        ("/v1/bots/support/invoke", {"session_id": 5, "text": "hi"}, 400, "invalid_input", "session_id"),
        ("/v1/bots/support/invoke", {"session_id": "s", "text": "hi", "x": 1}, 400, "invalid_input", "x: Extra"),
        ("/v1/bots/support/invoke", ["not", "an", "object"], 400, "invalid_input", "must be a JSON object"),
        ("/v1/bots/support/invoke", {"session_id": "", "text": "hi"}, 400, "invalid_input", "session_id"),
        ("/v1/bots/support/invoke", {"session_id": "s", "text": "a" * 20_000}, 413, "payload_too_large", "16000"),
    ],
)
async def test_bad_input_is_a_clear_4xx_and_writes_nothing(
    client: httpx.AsyncClient,
    platform: Platform,
    scripted: dict[str, ScriptedModel],
    path: str,
    body: object,
    status: int,
    code: str,
    message: str,
) -> None:
    response = await client.post(path, json=body)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code
    assert message in error["message"]
    assert scripted["large"].requests == []
    assert await platform.store.list_sessions() == []


async def test_malformed_and_oversized_bodies(client: httpx.AsyncClient, platform: Platform) -> None:
    malformed = await client.post(
        "/v1/bots/support/invoke", content=b'{"session_id": "s", "text": ', headers={"content-type": "application/json"}
    )
    assert malformed.status_code == 400
    assert "not valid JSON" in malformed.json()["error"]["message"]

    megabyte = json.dumps({"session_id": "s", "text": "x" * 1_000_000}).encode()
    too_big = await client.post("/v1/bots/support/invoke", content=megabyte)
    assert too_big.status_code == 413
    assert too_big.json()["error"]["code"] == "payload_too_large"

    empty = await client.post("/v1/bots/support/invoke", content=b"")
    assert empty.status_code == 400
    assert await platform.store.list_sessions() == []


async def test_unknown_route_and_wrong_method_answer_json(client: httpx.AsyncClient) -> None:
    missing = await client.get("/v1/nothing")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    wrong = await client.get("/v1/bots/support/invoke")
    assert wrong.status_code == 405


async def test_real_server_on_loopback_serves_health_invoke_and_chat(
    platform: Platform, scripted: dict[str, ScriptedModel], capsys: pytest.CaptureFixture[str]
) -> None:
    scripted["large"].script = ["pong", call("github")]
    scripted["small"].script = [call("assign_copilot_seats", usernames=["octocat"]), "octocat has a seat now."]
    async with serving(platform) as base_url:
        async with httpx.AsyncClient(base_url=base_url, trust_env=False) as http:
            health = await http.get("/healthz")
            assert health.json() == {"status": "ok", "bots": ["support"]}
            reply = await http.post("/v1/bots/support/invoke", json={"session_id": "r", "text": "ping"})
            assert reply.json()["reply"] == "pong"
        # `botfactory chat` against the running server: streamed progress lines, then the reply
        assert await asyncio.to_thread(server_is_up, base_url)
        await asyncio.to_thread(chat_remote, base_url, "support", "cli-1", ["give octocat copilot"])
        out = capsys.readouterr().out
        assert "support → github" in out
        assert "support/github → assign_copilot_seats" in out
        assert "< octocat has a seat now." in out
        assert platform.github_demo is not None
        assert [c.usernames for c in platform.github_demo.calls] == [("octocat",)]


async def test_chat_sends_its_api_key_to_a_server_that_requires_keys(
    platform: Platform, scripted: dict[str, ScriptedModel], capsys: pytest.CaptureFixture[str]
) -> None:
    scripted["large"].script = ["hello from serve"]
    issued = await platform.api_keys.create(bot="support", name="cli")
    async with serving(platform, auth="keys") as base_url:
        with pytest.raises(BotfactoryError, match="API key"):
            await asyncio.to_thread(chat_remote, base_url, "support", "cli-k", ["hi"])
        await asyncio.to_thread(chat_remote, base_url, "support", "cli-k", ["hi"], api_key=issued.secret)
    assert "< hello from serve" in capsys.readouterr().out
