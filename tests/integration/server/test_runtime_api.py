"""The runtime's HTTP API: queue a message, follow the session and its events, cancel; bad input is a clear 4xx."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from serving import serving

from botfactory.agents import Agent, Bot
from botfactory.channels import http as http_channel
from botfactory.inference import Model, ModelProfile, ModelRequest, ModelResponse
from botfactory.messages import Message, Usage
from botfactory.server import Platform, create_app
from botfactory.testing import ScriptedModel, call, final

pytestmark = pytest.mark.integration


class GateModel(Model):
    """A model that answers only once the test opens its gate, so a turn can be held running."""

    def __init__(self) -> None:
        self.name = "gate"
        self.profile = ModelProfile()
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()
        self.calls = 0

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.calls += 1
        self.entered.set()
        await self.gate.wait()
        last = next(m for m in reversed(request.messages) if m.role == "user")
        return ModelResponse(
            message=Message(role="assistant", content=f"done: {last.content}"),
            usage=Usage(input_tokens=3, output_tokens=2),
            model=self.name,
            latency_s=0.0,
        )


@pytest.fixture
def gate() -> GateModel:
    return GateModel()


@pytest.fixture
def scripted(gate: GateModel) -> dict[str, Any]:
    """The conftest's models plus ``gate`` (replaces the conftest fixture of the same name)."""
    return {"large": ScriptedModel([], name="large"), "small": ScriptedModel([], name="small"), "gate": gate}


@pytest.fixture
def bots(platform: Platform, gate: GateModel) -> Iterator[Platform]:
    """Adds ``echo`` (scripted ``small``), ``held`` (the gate model) and ``strict`` (gate model, ``reject``)."""
    platform.bots.add(Bot(name="echo", agent=Agent(name="echo", instructions="Answer.", model="small")))
    platform.bots.add(Bot(name="held", agent=Agent(name="held", instructions="Answer.", model="gate")))
    platform.bots.add(
        Bot(name="strict", agent=Agent(name="strict", instructions="Answer.", model="gate"), double_texting="reject")
    )
    yield platform
    gate.gate.set()  # before the platform stops: a held turn would make it wait out the shutdown grace


@pytest.fixture
async def client(bots: Platform) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(bots))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


async def wait_for(predicate: Callable[[], Any], *, within: float = 20.0) -> None:
    async with asyncio.timeout(within):
        while not await predicate():  # noqa: ASYNC110 - the state is in the database
            await asyncio.sleep(0.02)


async def session_json(client: httpx.AsyncClient, session_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/sessions/{session_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


async def idle(client: httpx.AsyncClient, session_id: str) -> dict[str, Any]:
    """The session once no work is queued or running."""
    found: dict[str, Any] = {}

    async def check() -> bool:
        found.update(await session_json(client, session_id))
        return found["state"] == "idle" and found["pending"] == 0

    await wait_for(check)
    return found


def frames(text: str) -> list[dict[str, Any]]:
    """Parse server-sent events (comments skipped) into ``{"id", "event", "data"}``."""
    parsed = []
    for block in text.split("\n\n"):
        fields: dict[str, Any] = {}
        for line in block.splitlines():
            if line.startswith(":") or ": " not in line:
                continue
            name, value = line.split(": ", 1)
            fields[name] = json.loads(value) if name == "data" else value
        if fields:
            parsed.append(fields)
    return parsed


# Posting messages


async def test_a_posted_message_is_queued_then_answered_by_the_worker(
    client: httpx.AsyncClient, scripted: dict[str, Any]
) -> None:
    scripted["small"].script = ["Hello from echo"]
    response = await client.post("/v1/bots/echo/sessions/s-1/messages", json={"text": "hi", "user_id": "u1"})

    assert response.status_code == 202
    body = response.json()
    assert set(body) == {"message_id", "session_id", "seq", "duplicate"}
    assert (body["session_id"], body["seq"], body["duplicate"]) == ("s-1", 1, False)
    assert response.headers["location"] == "/v1/sessions/s-1"
    session = await idle(client, "s-1")
    assert (session["bot"], session["user_id"]) == ("echo", "u1")
    assert [(m["role"], m["text"]) for m in session["messages"]] == [("user", "hi"), ("assistant", "Hello from echo")]
    assert session["messages"][0]["id"] == body["message_id"]
    assert session["messages"][0]["status"] == "done"
    [turn] = session["turns"]
    assert (turn["status"], turn["reply"], turn["message_ids"]) == (
        "completed",
        "Hello from echo",
        [body["message_id"]],
    )


async def test_a_repeated_dedup_key_returns_the_first_message_and_creates_no_work(
    client: httpx.AsyncClient, scripted: dict[str, Any]
) -> None:
    scripted["small"].script = ["only once"]
    url = "/v1/bots/echo/sessions/s-dup/messages"
    first = await client.post(url, json={"text": "hi", "dedup_key": "evt-1"})
    await idle(client, "s-dup")
    again = await client.post(url, json={"text": "hi (redelivered)", "dedup_key": "evt-1"})

    assert first.status_code == again.status_code == 202
    assert again.json() == {**first.json(), "duplicate": True}
    session = await idle(client, "s-dup")
    assert [m["text"] for m in session["messages"]] == ["hi", "only once"]
    assert len(scripted["small"].requests) == 1


async def test_reject_policy_answers_409_while_busy_and_writes_nothing(
    client: httpx.AsyncClient, gate: GateModel
) -> None:
    url = "/v1/bots/strict/sessions/s-busy/messages"
    assert (await client.post(url, json={"text": "first"})).status_code == 202
    await asyncio.wait_for(gate.entered.wait(), 20)

    busy = await client.post(url, json={"text": "second"})
    assert busy.status_code == 409
    assert busy.json()["error"]["code"] == "session_busy"
    assert "wait for the reply" in busy.json()["error"]["message"]
    assert [m["text"] for m in (await session_json(client, "s-busy"))["messages"]] == ["first"]

    gate.gate.set()
    await idle(client, "s-busy")
    assert (await client.post(url, json={"text": "third"})).status_code == 202
    session = await idle(client, "s-busy")
    assert [m["text"] for m in session["messages"]] == ["first", "done: first", "third", "done: third"]


async def test_a_session_of_another_bot_is_refused(client: httpx.AsyncClient, scripted: dict[str, Any]) -> None:
    scripted["small"].script = ["ok"]
    await client.post("/v1/bots/echo/sessions/s-owned/messages", json={"text": "hi"})
    other = await client.post("/v1/bots/held/sessions/s-owned/messages", json={"text": "hi"})
    assert other.status_code == 400
    assert "belongs to bot 'echo'" in other.json()["error"]["message"]
    session = await idle(client, "s-owned")
    assert [m["text"] for m in session["messages"]] == ["hi", "ok"]


@pytest.mark.parametrize(
    ("path", "body", "status", "code", "message"),
    [
        ("/v1/bots/nope/sessions/s/messages", {"text": "hi"}, 404, "bot_not_found", "no bot named 'nope'"),
        ("/v1/bots/echo/sessions/s/messages", {"text": "  \n "}, 400, "invalid_input", "text is empty"),
        ("/v1/bots/echo/sessions/s/messages", {}, 400, "invalid_input", "text: Field required"),
        ("/v1/bots/echo/sessions/s/messages", {"text": 5}, 400, "invalid_input", "text: Input should be a valid"),
        ("/v1/bots/echo/sessions/s/messages", {"text": "hi", "session_id": "x"}, 400, "invalid_input", "Extra"),
        ("/v1/bots/echo/sessions/s/messages", ["hi"], 400, "invalid_input", "must be a JSON object"),
        ("/v1/bots/echo/sessions/s/messages", "hi", 400, "invalid_input", "must be a JSON object"),
        ("/v1/bots/echo/sessions/s/messages", {"text": "hi", "dedup_key": ""}, 400, "invalid_input", "dedup_key"),
        ("/v1/bots/echo/sessions/s/messages", {"text": "hi", "dedup_key": 7}, 400, "invalid_input", "dedup_key"),
        ("/v1/bots/echo/sessions/s/messages", {"text": "hi", "user_id": "u" * 300}, 400, "invalid_input", "user_id"),
        ("/v1/bots/echo/sessions/s/messages", {"text": "a" * 16_001}, 413, "payload_too_large", "16000"),
        ("/v1/bots/echo/sessions/" + "s" * 300 + "/messages", {"text": "hi"}, 400, "invalid_input", "session_id"),
        ("/v1/bots/echo/sessions/bad%00id/messages", {"text": "hi"}, 400, "invalid_input", "session_id"),
    ],
)
async def test_bad_messages_are_a_clear_4xx_and_write_nothing(
    client: httpx.AsyncClient,
    bots: Platform,
    path: str,
    body: object,
    status: int,
    code: str,
    message: str,
) -> None:
    response = await client.post(path, json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert message in error["message"]
    assert await bots.store.list_sessions() == []


async def test_malformed_oversized_and_empty_bodies(client: httpx.AsyncClient, bots: Platform) -> None:
    url = "/v1/bots/echo/sessions/s/messages"
    malformed = await client.post(url, content=b'{"text": ', headers={"content-type": "application/json"})
    assert malformed.status_code == 400
    assert "not valid JSON" in malformed.json()["error"]["message"]
    too_big = await client.post(url, content=json.dumps({"text": "x" * 1_000_000}).encode())
    assert too_big.status_code == 413
    assert too_big.json()["error"]["code"] == "payload_too_large"
    empty = await client.post(url, content=b"")
    assert empty.status_code == 400
    not_utf8 = await client.post(url, content=b'{"text": "\xff"}')
    assert not_utf8.status_code == 400
    assert await bots.store.list_sessions() == []


# Reading sessions


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/sessions/nope"),
        ("GET", "/v1/sessions/nope/events"),
        ("GET", "/v1/sessions/nope/events?follow=false"),
        ("POST", "/v1/sessions/nope/cancel"),
    ],
)
async def test_an_unknown_session_is_404(client: httpx.AsyncClient, method: str, path: str) -> None:
    response = await client.request(method, path)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "session_not_found"
    assert "no session 'nope'" in response.json()["error"]["message"]


async def test_sessions_list_filters_by_bot_and_activity(
    client: httpx.AsyncClient, scripted: dict[str, Any], gate: GateModel
) -> None:
    scripted["small"].script = ["ok"]
    await client.post("/v1/bots/echo/sessions/s-done/messages", json={"text": "hi"})
    await idle(client, "s-done")
    await client.post("/v1/bots/held/sessions/s-held/messages", json={"text": "hi"})
    await asyncio.wait_for(gate.entered.wait(), 20)

    everything = (await client.get("/v1/sessions")).json()["sessions"]
    assert {s["id"]: s["state"] for s in everything} == {"s-done": "idle", "s-held": "running"}
    held = (await client.get("/v1/sessions?bot=held")).json()["sessions"]
    assert [(s["id"], s["bot"], s["pending"]) for s in held] == [("s-held", "held", 1)]
    assert held[0]["running_turn_id"] is not None
    assert {s["id"] for s in (await client.get("/v1/sessions?active=true")).json()["sessions"]} >= {"s-held"}
    assert len((await client.get("/v1/sessions?limit=1")).json()["sessions"]) == 1
    for bad in ("limit=0", "limit=abc", "limit=²", "limit=100000", "active=maybe"):
        response = await client.get(f"/v1/sessions?{bad}")
        assert response.status_code == 400, bad
        assert response.json()["error"]["code"] == "invalid_input"
    gate.gate.set()


# Events


async def test_stored_events_replay_and_resume_from_an_event_id(
    client: httpx.AsyncClient, scripted: dict[str, Any]
) -> None:
    scripted["large"].script = [call("knowledge"), final("Rotate with the CLI.", sources=["docs/vault/x.md"])]
    await client.post("/v1/bots/support/sessions/s-ev/messages", json={"text": "how do I rotate vault keys?"})
    await idle(client, "s-ev")

    response = await client.get("/v1/sessions/s-ev/events?follow=false")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = frames(response.text)
    types = [e["event"] for e in events]
    assert types[0] == "turn_started"
    assert types[-1] == "turn_finished"
    assert {"model_call_started", "model_call_finished", "tool_call_started", "agent_finished"} <= set(types)
    ids = [int(e["id"]) for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(e["data"]["type"] == e["event"] for e in events)
    assert {e["data"]["turn_id"] for e in events} == {events[0]["data"]["turn_id"]}
    finished = events[-1]["data"]
    assert (finished["status"], finished["error_code"]) == ("completed", None)
    assert finished["reply"].startswith("Rotate with the CLI.")
    sub_agent = [e["data"] for e in events if e["event"] == "agent_finished"]
    assert [e["agent_path"] for e in sub_agent] == ["support/knowledge", "support"]

    after_first = await client.get(f"/v1/sessions/s-ev/events?follow=false&after={ids[0]}")
    assert [int(e["id"]) for e in frames(after_first.text)] == ids[1:]
    resumed = await client.get("/v1/sessions/s-ev/events?follow=false&after=0", headers={"Last-Event-ID": str(ids[-2])})
    assert [int(e["id"]) for e in frames(resumed.text)] == ids[-1:]
    assert frames((await client.get(f"/v1/sessions/s-ev/events?follow=false&after={ids[-1]}")).text) == []


@pytest.mark.parametrize(
    ("query", "headers", "message"),
    [
        ("after=-1", {}, "after must be an event id"),
        ("after=abc", {}, "after must be an event id"),
        ("after=", {}, "after must be an event id"),
        ("", {"Last-Event-ID": "x1"}, "Last-Event-ID header must be an event id"),
        ("follow=perhaps", {}, "follow must be true or false"),
    ],
)
async def test_bad_event_stream_parameters_are_400(
    client: httpx.AsyncClient, scripted: dict[str, Any], query: str, headers: dict[str, str], message: str
) -> None:
    scripted["small"].script = ["ok"]
    await client.post("/v1/bots/echo/sessions/s-q/messages", json={"text": "hi"})
    response = await client.get(f"/v1/sessions/s-q/events?{query}", headers=headers)
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]
    await idle(client, "s-q")


async def read_until(lines: AsyncIterator[str], stop: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """Read SSE lines into events until one satisfies ``stop``."""
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    async for line in lines:
        if line == "":
            if current:
                events.append(current)
                if stop(current):
                    return events
            current = {}
        elif line.startswith(":"):
            current.setdefault("comments", []).append(line)
        else:
            name, value = line.split(": ", 1)
            current[name] = json.loads(value) if name == "data" else value
    raise AssertionError(f"the stream ended after {events}")


async def test_a_live_event_stream_follows_a_turn_with_its_sub_agents(bots: Platform, scripted: dict[str, Any]) -> None:
    scripted["large"].script = [call("github")]
    scripted["small"].script = [call("assign_copilot_seats", usernames=["octocat"]), "octocat has a seat now."]
    async with serving(bots) as base_url, httpx.AsyncClient(base_url=base_url, trust_env=False, timeout=20) as http:
        posted = await http.post("/v1/bots/support/sessions/s-live/messages", json={"text": "give octocat copilot"})
        assert posted.status_code == 202
        async with http.stream("GET", "/v1/sessions/s-live/events") as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            events = await asyncio.wait_for(
                read_until(stream.aiter_lines(), lambda e: e.get("event") == "turn_finished"), 20
            )
        by_type = [(e["event"], e["data"].get("agent_path")) for e in events]
        assert by_type[0] == ("turn_started", None)
        assert ("tool_call_started", "support") in by_type
        assert ("tool_call_started", "support/github") in by_type
        assert ("agent_finished", "support/github") in by_type
        assert events[-1]["data"]["status"] == "completed"
        assert "octocat" in events[-1]["data"]["reply"]
        assert events[0]["data"]["message_ids"] == [posted.json()["message_id"]]

        # a second message while following from the last seen id: only the new turn's events arrive
        scripted["large"].script.append(call("github"))  # scripts continue where they stopped
        scripted["small"].script += [call("assign_copilot_seats", usernames=["hubot"]), "hubot has a seat now."]
        last = events[-1]["id"]
        async with http.stream("GET", "/v1/sessions/s-live/events", headers={"Last-Event-ID": last}) as stream:
            await http.post("/v1/bots/support/sessions/s-live/messages", json={"text": "and hubot"})
            more = await asyncio.wait_for(
                read_until(stream.aiter_lines(), lambda e: e.get("event") == "turn_finished"), 20
            )
        assert int(more[0]["id"]) > int(last)
        assert more[0]["event"] == "turn_started"
        assert "hubot" in more[-1]["data"]["reply"]


async def test_a_quiet_event_stream_sends_keep_alives(
    bots: Platform, scripted: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_channel, "KEEPALIVE_S", 0.05)
    scripted["small"].script = ["ok"]
    async with serving(bots) as base_url, httpx.AsyncClient(base_url=base_url, trust_env=False, timeout=20) as http:
        await http.post("/v1/bots/echo/sessions/s-quiet/messages", json={"text": "hi"})
        async with http.stream("GET", "/v1/sessions/s-quiet/events") as stream:
            events = await read_until(stream.aiter_lines(), lambda e: "comments" in e)
    assert events[-1]["comments"] == [": ping"]


# Cancellation


async def test_cancel_stops_the_running_turn_and_the_queued_messages(
    client: httpx.AsyncClient, gate: GateModel
) -> None:
    url = "/v1/bots/held/sessions/s-stop/messages"
    first = (await client.post(url, json={"text": "long job"})).json()
    await asyncio.wait_for(gate.entered.wait(), 20)
    await client.post(url, json={"text": "and another"})

    response = await client.post("/v1/sessions/s-stop/cancel")
    assert response.status_code == 202
    result = response.json()
    assert result["running"] is True
    assert result["cancelled_messages"] == 1
    assert result["session_id"] == "s-stop"
    session = await idle(client, "s-stop")
    [turn] = session["turns"]
    assert (turn["id"], turn["status"], turn["reply"]) == (result["turn_id"], "cancelled", None)
    assert turn["message_ids"] == [first["message_id"]]
    assert [(m["text"], m["status"]) for m in session["messages"]] == [
        ("long job", "cancelled"),
        ("and another", "cancelled"),
    ]
    assert gate.calls == 1

    again = await client.post("/v1/sessions/s-stop/cancel")
    assert again.status_code == 200
    assert again.json() == {"session_id": "s-stop", "turn_id": None, "running": False, "cancelled_messages": 0}
