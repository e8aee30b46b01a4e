"""One turn of the support bot, Slack in and reply out, exported over OTLP/HTTP to a real receiver on 127.0.0.1.

The turn goes: a signed Slack event -> the inbox -> the worker -> the ``support`` orchestrator -> its ``github``
sub-agent -> the ``assign_copilot_seats`` tool (the GitHub stand-in) -> the reply, delivered into the Slack
thread. The receiver decodes the protobuf export requests; the spans must form exactly one trace with the
expected tree, and the same spans must be in botfactory's own span store.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from otlp_receiver import OtlpReceiver, ReceivedSpan, otlp_receiver
from pydantic import SecretStr

from botfactory.config import DEFAULT_SLACK_THINKING, Settings
from botfactory.memory import OnnxMiniLMEmbedder
from botfactory.server import Platform, create_app, open_knowledge
from botfactory.store import SpanStore, Store
from botfactory.testing import (
    ScriptedModel,
    SlackStandIn,
    call,
    message_event,
    run_standin_server,
    scripted_inference,
    serve_app,
    signed_event,
)

pytestmark = pytest.mark.integration

SECRET = "trace-signing-secret"
TOKEN = "xoxb-trace"
TS = "1700000900.000100"
SESSION = f"T1:C9:{TS}"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory, embedder: OnnxMiniLMEmbedder) -> Path:
    """A database with the support bot's docs already ingested (the platform would otherwise ingest them)."""
    path = tmp_path_factory.mktemp("trace-export") / "botfactory.db"

    async def seed() -> None:
        async with await Store.open(f"sqlite:///{path}") as store:
            await open_knowledge(store, embedder=embedder)

    asyncio.run(seed())
    return path


@pytest.fixture
def slack() -> Iterator[tuple[SlackStandIn, str]]:
    standin = SlackStandIn(token=TOKEN)
    with run_standin_server(standin) as url:
        yield standin, url


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with otlp_receiver() as received:
        yield received


async def _until(check: Any, *, within: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def _one(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, f"expected one {name!r} span, got {len(found)}: {sorted(s.name for s in spans)}"
    return found[0]


async def test_a_slack_turn_through_two_agents_and_a_tool_is_one_exported_trace_with_the_expected_tree(
    tmp_path: Path,
    seeded: Path,
    embedder: OnnxMiniLMEmbedder,
    slack: tuple[SlackStandIn, str],
    receiver: OtlpReceiver,
    spans: Any,  # the test process's tracer provider exists before the platform starts (see conftest)
) -> None:
    shutil.copy(seeded, tmp_path / "botfactory.db")
    standin, slack_url = slack
    settings = Settings.load(
        home=tmp_path,
        slack_signing_secret=SecretStr(SECRET),
        slack_bot_token=SecretStr(TOKEN),
        slack_api_url=f"{slack_url}/api/",
        tracing={"otlp_endpoint": receiver.url, "otlp_headers": {"x-collector-key": "k-123"}},
    )
    large = ScriptedModel([call("github")], name="large")
    small = ScriptedModel(
        [call("assign_copilot_seats", usernames=["octocat"]), "octocat has a Copilot seat now."], name="small"
    )
    platform = await Platform.start(
        settings, inference=scripted_inference({"large": large, "small": small}), embedder=embedder
    )
    try:
        async with serve_app(create_app(platform)) as base_url:
            body, headers = signed_event(
                message_event("<@UBOT> please give octocat a Copilot seat", team="T1", channel="C9", user="U7", ts=TS),
                SECRET,
            )
            async with httpx.AsyncClient() as client:
                assert (await client.post(f"{base_url}/slack/events", content=body, headers=headers)).status_code == 200
            await _until(
                lambda: standin.posts and standin.posts[-1].text != DEFAULT_SLACK_THINKING, within=20, what="reply"
            )
        assert standin.posts[-1].text == "octocat has a Copilot seat now."
        assert platform.tracing is not None
        # The delivery span ends just after Slack took the reply; flushing sends the batch at once.
        deadline = asyncio.get_running_loop().time() + 10
        while not receiver.named("deliver reply"):
            assert asyncio.get_running_loop().time() < deadline, "the deliver reply span was not exported"
            await platform.tracing.flush()
            await asyncio.sleep(0.05)
        stored = await SpanStore(platform.store.engine).for_session(SESSION)
    finally:
        await platform.aclose()

    received = list(receiver.spans)
    assert len({span.trace_id for span in received}) == 1, sorted((s.trace_id, s.name) for s in received)
    assert all(h.get("x-collector-key") == "k-123" for h in receiver.headers)
    assert all(h.get("content-type") == "application/x-protobuf" for h in receiver.headers)

    server = _one(received, "POST /slack/events")
    inbox, turn = _one(received, "inbox wait"), _one(received, "turn support")
    support, github = _one(received, "invoke_agent support"), _one(received, "invoke_agent github")
    route, grant = _one(received, "execute_tool github"), _one(received, "execute_tool assign_copilot_seats")
    deliver = _one(received, "deliver reply")
    assert server.kind == "server" and server.parent_span_id is None
    assert inbox.parent_span_id == server.span_id and turn.parent_span_id == server.span_id
    assert support.parent_span_id == turn.span_id
    assert _one(received, "chat large").parent_span_id == support.span_id
    assert route.parent_span_id == support.span_id
    assert github.parent_span_id == route.span_id  # the sub-agent runs inside its tool call
    chats = [s for s in received if s.name == "chat small"]
    assert len(chats) == 2 and {c.parent_span_id for c in chats} == {github.span_id}
    assert grant.parent_span_id == github.span_id
    policies = [s for s in received if s.name == "policy decision"]
    assert sorted(p.parent_span_id or "" for p in policies) == sorted([route.span_id, grant.span_id])
    assert deliver.parent_span_id == turn.span_id and deliver.kind == "client"
    assert deliver.attributes["botfactory.channel"] == "slack"
    assert deliver.attributes["botfactory.delivery.outcome"] == "delivered"
    assert deliver.attributes["botfactory.delivery.attempt"] == 1

    # Every span of the turn names the session, the bot and the user; chat spans carry model and usage.
    for span in received:
        if span is not server:
            assert span.attributes["gen_ai.conversation.id"] == SESSION, span.name
            assert span.attributes["botfactory.bot"] == "support", span.name
    for span in (turn, support, github, route, grant, *chats, *policies):
        assert span.attributes["botfactory.user"] == "slack:T1:U7", span.name
    assert chats[0].attributes["gen_ai.request.model"] == "small"
    assert "gen_ai.usage.input_tokens" in chats[0].attributes
    assert grant.attributes["gen_ai.tool.name"] == "assign_copilot_seats"
    assert "gen_ai.input.messages" not in chats[0].attributes  # the support bot did not opt in to content

    # The span store holds the same spans (the channel span has no session: it is in the trace, not the session).
    assert {(s.span_id, s.name) for s in stored} == {(s.span_id, s.name) for s in received if s is not server}
    by_trace = await _stored_trace(tmp_path, server.trace_id)
    assert {(s.span_id, s.parent_span_id) for s in by_trace} == {(s.span_id, s.parent_span_id) for s in received}


async def _stored_trace(home: Path, trace_id: str) -> list[Any]:
    async with await Store.open(f"sqlite:///{home / 'botfactory.db'}") as store:
        return await SpanStore(store.engine).for_trace(trace_id)
