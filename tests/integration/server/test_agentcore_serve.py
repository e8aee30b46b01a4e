"""The AgentCore runtime contract served: ``POST /invocations`` and ``GET /ping``, as AgentCore clients call them."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from botfactory.agents import Agent, Bot, ContractAgent, TurnInput
from botfactory.inference import ModelRequest, ModelResponse
from botfactory.server import Platform, create_app
from botfactory.testing import ScriptedModel, serve_app

pytestmark = pytest.mark.integration

SESSION = "X-Amzn-Bedrock-AgentCore-Runtime-Session-Id"
SID = "agentcore-test-session-0123456789abcdef"  # 39 characters: within the contract's 33-256


class HeldModel(ScriptedModel):
    """A scripted model whose calls wait while :attr:`held` is set, so a test can look at a turn mid-flight."""

    def __init__(self, script: list[Any], *, name: str) -> None:
        super().__init__(script, name=name)
        self.released = asyncio.Event()
        self.released.set()
        self.entered = asyncio.Event()

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.entered.set()
        await self.released.wait()
        return await super().complete(request)


@pytest.fixture
def scripted() -> dict[str, ScriptedModel]:
    return {"large": HeldModel([], name="large"), "small": ScriptedModel([], name="small")}


@pytest.fixture
async def client(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(platform))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


@contextlib.asynccontextmanager
async def serving_contract(platform: Platform) -> AsyncIterator[str]:
    """The contract-only app (what ``agentcore_port`` serves) on a real server on a free loopback port."""
    async with serve_app(create_app(platform, agentcore_only=True)) as base_url:
        yield base_url


def data_lines(text: str) -> list[dict[str, Any]]:
    frames = [f for f in text.split("\n\n") if f.strip()]
    assert all(f.startswith("data: ") for f in frames), frames  # the SDK's framing: data lines only
    return [json.loads(f.removeprefix("data: ")) for f in frames]


async def test_invocation_answers_with_the_result_and_keeps_the_callers_session(
    client: httpx.AsyncClient, platform: Platform, scripted: dict[str, ScriptedModel]
) -> None:
    scripted["large"].script = ["Hello from support"]
    response = await client.post("/invocations", json={"prompt": "hi", "user_id": "u-1"}, headers={SESSION: SID})

    assert response.status_code == 200
    assert response.headers[SESSION] == SID
    body = response.json()
    assert body["result"] == "Hello from support"
    assert (body["session_id"], body["status"]) == (SID, "completed")
    session = await platform.store.get_session(SID)
    assert (session.bot, session.user_id) == ("support", "u-1")
    messages = await platform.store.list_messages(SID)
    assert [(m.role, m.text) for m in messages] == [("user", "hi"), ("assistant", "Hello from support")]


async def test_without_a_session_header_a_new_session_is_started_and_returned(
    client: httpx.AsyncClient, scripted: dict[str, ScriptedModel]
) -> None:
    scripted["large"].script = ["first", "second"]
    first = await client.post("/invocations", json={"prompt": "one"})
    assert first.status_code == 200
    session_id = first.headers[SESSION]
    assert 33 <= len(session_id) <= 256 and first.json()["session_id"] == session_id

    second = await client.post("/invocations", json={"prompt": "two"}, headers={SESSION: session_id})
    assert second.json()["result"] == "second"
    seen = [(m.role, m.content) for m in scripted["large"].requests[1].messages[1:]]
    assert seen == [("user", "one"), ("assistant", "first"), ("user", "two")]
    other = await client.post("/invocations", json={"prompt": "three"})
    assert other.headers[SESSION] != session_id


async def test_streaming_sends_engine_events_then_the_result_as_data_lines(
    client: httpx.AsyncClient, scripted: dict[str, ScriptedModel]
) -> None:
    scripted["large"].script = ["streamed answer"]
    response = await client.post(
        "/invocations", json={"prompt": "hi"}, headers={SESSION: SID, "accept": "text/event-stream"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers[SESSION] == SID
    frames = data_lines(response.text)
    assert [f["type"] for f in frames[:-1]] == ["model_call_started", "model_call_finished", "agent_finished"]
    assert frames[-1]["result"] == "streamed answer" and frames[-1]["status"] == "completed"


async def test_a_custom_header_picks_the_bot(
    client: httpx.AsyncClient, platform: Platform, scripted: dict[str, ScriptedModel]
) -> None:
    platform.bots.add(Bot(name="echo", agent=Agent(name="echo", instructions="Repeat.", model="small")))
    scripted["small"].script = ["echo bot here"]
    response = await client.post(
        "/invocations",
        json={"prompt": "who are you?"},
        headers={SESSION: SID, "X-Amzn-Bedrock-AgentCore-Runtime-Custom-Bot": "echo"},
    )
    assert response.json()["result"] == "echo bot here"
    assert (await platform.store.get_session(SID)).bot == "echo"

    missing = await client.post(
        "/invocations", json={"prompt": "hi"}, headers={"X-Amzn-Bedrock-AgentCore-Runtime-Custom-Bot": "nobody"}
    )
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "bot_not_found"


async def test_the_default_bot_comes_from_the_settings(
    client: httpx.AsyncClient, platform: Platform, scripted: dict[str, ScriptedModel]
) -> None:
    platform.bots.add(Bot(name="echo", agent=Agent(name="echo", instructions="Repeat.", model="small")))
    platform.runtime.settings = platform.runtime.settings.model_copy(update={"agentcore_bot": "echo"})
    scripted["small"].script = ["default is echo"]
    response = await client.post("/invocations", json={"prompt": "hi"}, headers={SESSION: SID})
    assert response.json()["result"] == "default is echo"


@pytest.mark.parametrize(
    ("session_id", "length"),
    [("x" * 32, 32), ("x" * 257, 257), ("short", 5)],
    ids=["32-chars", "257-chars", "5-chars"],
)
async def test_a_session_id_outside_33_to_256_characters_is_refused(
    client: httpx.AsyncClient, platform: Platform, session_id: str, length: int
) -> None:
    response = await client.post("/invocations", json={"prompt": "hi"}, headers={SESSION: session_id})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert SESSION in error["message"] and f"it has {length}" in error["message"]
    assert await platform.runtime.list_sessions() == []


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"not json", "not valid JSON"),
        (b"", "empty"),
        (b'["hi"]', "JSON object"),
        (b'{"input": {"prompt": "hi"}}', 'needs a \\"prompt\\" string'),
        (b'{"prompt": 5}', "prompt: Input should be a valid string"),
        (b'{"prompt": "   "}', "text is empty"),
        (b'{"prompt": "hi", "extra": 1}', "extra: Extra inputs are not permitted"),
        (b'{"prompt": "hi", "user_id": ""}', "user_id"),
    ],
    ids=["not-json", "empty", "list", "input-wrapper", "number", "blank", "extra-key", "empty-user"],
)
async def test_bad_payloads_get_a_400_that_says_what_to_send(
    client: httpx.AsyncClient, platform: Platform, body: bytes, expected: str
) -> None:
    response = await client.post(
        "/invocations", content=body, headers={SESSION: SID, "content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_input"
    assert expected in json.dumps(response.json()["error"]["message"])
    assert await platform.runtime.list_sessions() == []


async def test_a_repeated_request_id_is_answered_once(
    client: httpx.AsyncClient, platform: Platform, scripted: dict[str, ScriptedModel]
) -> None:
    scripted["large"].script = ["only once"]
    headers = {SESSION: SID, "X-Amzn-Bedrock-AgentCore-Runtime-Request-Id": "req-1"}
    first = await client.post("/invocations", json={"prompt": "hi"}, headers=headers)
    again = await client.post("/invocations", json={"prompt": "hi"}, headers=headers)
    assert first.json()["result"] == again.json()["result"] == "only once"
    assert len(scripted["large"].requests) == 1
    assert len(await platform.store.list_messages(SID)) == 2


async def test_ping_is_healthy_when_idle_and_healthy_busy_while_a_turn_runs(
    client: httpx.AsyncClient, scripted: dict[str, ScriptedModel]
) -> None:
    model = scripted["large"]
    assert isinstance(model, HeldModel)
    idle = (await client.get("/ping")).json()
    assert idle["status"] == "Healthy" and isinstance(idle["time_of_last_update"], int)

    model.script = ["done"]
    model.released.clear()
    call = asyncio.create_task(client.post("/invocations", json={"prompt": "hi"}, headers={SESSION: SID}))
    await asyncio.wait_for(model.entered.wait(), 10)
    busy = (await client.get("/ping")).json()
    assert busy["status"] == "HealthyBusy"
    assert busy["time_of_last_update"] >= idle["time_of_last_update"]
    model.released.set()
    assert (await call).json()["result"] == "done"
    async with asyncio.timeout(5):  # the worker lets go of the turn just after the reply is written
        while (await client.get("/ping")).json()["status"] != "Healthy":  # noqa: ASYNC110 - polled over HTTP
            await asyncio.sleep(0.01)


async def test_the_contract_only_app_serves_invocations_and_ping_and_nothing_else(
    platform: Platform, scripted: dict[str, ScriptedModel]
) -> None:
    scripted["large"].script = ["over a real socket"]
    async with serving_contract(platform) as base, httpx.AsyncClient(base_url=base, trust_env=False) as http:
        assert (await http.get("/ping")).json()["status"] == "Healthy"
        response = await http.post("/invocations", json={"prompt": "hi"}, headers={SESSION: SID})
        assert response.json()["result"] == "over a real socket"
        assert (await http.get("/v1/bots")).status_code == 404
        assert (await http.get("/healthz")).status_code == 404


async def test_a_contract_agent_can_host_a_bot_served_by_another_botfactory(
    platform: Platform, scripted: dict[str, ScriptedModel]
) -> None:
    """Both directions together: botfactory's contract client talks to botfactory's contract server, streaming."""
    from botfactory.agents import Engine
    from botfactory.inference import Inference

    scripted["large"].script = ["served answer"]
    async with serving_contract(platform) as base:
        agent = ContractAgent(name="remote", url=base)
        events: list[Any] = []

        async def collect(event: Any) -> None:
            events.append(event)

        try:
            result = await Engine(Inference({})).run_turn(
                agent, TurnInput(session_id="outer", turn_id="t-1", text="hello"), on_event=collect
            )
        finally:
            await agent.aclose()
    assert result.reply == "served answer"
    chunks = [e.raw for e in events if e.kind == "contract_chunk"]
    assert '"type": "model_call_started"' in chunks[0] and '"result": "served answer"' in chunks[-1]
