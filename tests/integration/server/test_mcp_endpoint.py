"""Outside agents use a bot's tools over MCP (``/mcp/{bot}``), with the official ``mcp`` client, on a real server.

The bot, its tools and its Cedar policy are a user bot in a bots directory loaded by the real platform; the server
runs as ``botfactory serve`` does (API keys required). Every call passes the gateway: a refused call comes back as a
tool result with ``isError`` and the reason, and is in the audit log under the calling key.
"""

from __future__ import annotations

import shutil
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client, types
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from serving import serving

from botfactory.config import Settings
from botfactory.gateway import IDEMPOTENCY_META_KEY
from botfactory.identity import IssuedKey
from botfactory.memory import OnnxMiniLMEmbedder
from botfactory.server import Platform
from botfactory.store import AuditQuery, AuditRecord
from botfactory.testing import ScriptedModel, scripted_inference

pytestmark = pytest.mark.integration

OPS_BOT = '''
from typing import Literal

from botfactory.agents import Agent, Bot, ToolContext, tool

EXECUTED: list[str] = []
KEYS: list[str] = []


@tool
def read_ticket(ticket_id: str) -> str:
    """Read a ticket.

    Args:
        ticket_id: The ticket, e.g. T-1.
    """
    EXECUTED.append(f"read_ticket:{ticket_id}")
    return f"ticket {ticket_id}: the checkout service is slow"


@tool
def ticket_stats(queue: str, context: ToolContext) -> dict:
    """Count the open tickets of a queue.

    Args:
        queue: The queue's name.
    """
    EXECUTED.append(f"ticket_stats:{queue}")
    KEYS.append(context.idempotency_key)
    return {"queue": queue, "open": 3, "oldest": "T-1"}


@tool(side_effect="write")
def restart_service(service: str, env: Literal["dev", "staging", "prod"]) -> str:
    """Restart a service.

    Args:
        service: The service's name.
        env: Where.
    """
    EXECUTED.append(f"restart_service:{service}:{env}")
    return f"restarted {service} in {env}"


@tool
def flaky() -> str:
    """Fail with a bug."""
    raise RuntimeError("internal detail that must stay on the server")


triage = Agent(name="triage", instructions="Triage tickets.", model="small", description="Triage tickets.")

bot = Bot(
    name="ops",
    agent=Agent(
        name="ops",
        instructions="You run operations.",
        model="large",
        tools=[read_ticket, ticket_stats, restart_service, flaky, triage],
    ),
)
'''

OTHER_BOT = """
from botfactory.agents import Agent, Bot

bot = Bot(name="other", agent=Agent(name="other", instructions="Other.", model="small"))
"""

OPS_POLICY = """
@id("no-prod-writes")
@reason("production is changed through a change request")
forbid(principal, action == Action::"call", resource)
when { resource.side_effect == "write" && context.arguments has env && context.arguments.env == "prod" };
"""


@pytest.fixture
async def ops(tmp_path: Path, seeded_database: Path, embedder: OnnxMiniLMEmbedder) -> AsyncIterator[Platform]:
    bots_dir = tmp_path / "bots"
    (bots_dir / "ops" / "policies").mkdir(parents=True)
    (bots_dir / "ops.py").write_text(textwrap.dedent(OPS_BOT))
    (bots_dir / "other.py").write_text(textwrap.dedent(OTHER_BOT))
    (bots_dir / "ops" / "policies" / "prod.cedar").write_text(OPS_POLICY)
    shutil.copy(seeded_database, tmp_path / "botfactory.db")
    settings = Settings.load(home=tmp_path, github_org="example-org", bots_dir=bots_dir)
    models = {"large": ScriptedModel([], name="large"), "small": ScriptedModel([], name="small")}
    started = await Platform.start(settings, inference=scripted_inference(models), embedder=embedder)
    try:
        yield started
    finally:
        await started.aclose()


@pytest.fixture
async def base_url(ops: Platform) -> AsyncIterator[str]:
    async with serving(ops, auth="keys") as url:
        yield url


@pytest.fixture
async def ops_key(ops: Platform) -> IssuedKey:
    return await ops.api_keys.create(bot="ops", name="outside-agent")


def module() -> Any:
    return sys.modules["botfactory_user_bots.ops"]


@asynccontextmanager
async def mcp_client(url: str, key: IssuedKey | None, *, mode: str = "auto") -> AsyncIterator[Client]:
    """The official high-level client over streamable HTTP, presenting ``key`` as a bearer token."""
    headers = {"Authorization": f"Bearer {key.secret}"} if key is not None else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as client,
    ):
        yield client


async def audit_rows(platform: Platform, **query: Any) -> list[AuditRecord]:
    audit = platform.engine.gateway.audit
    assert audit is not None
    return list(await audit.list(AuditQuery(**query)))


def text_of(result: types.CallToolResult) -> str:
    return "".join(block.text for block in result.content if isinstance(block, types.TextContent))


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_an_outside_agent_lists_the_granted_tools_with_their_schemas(
    ops: Platform, base_url: str, ops_key: IssuedKey, mode: str
) -> None:
    """Both protocol eras: the initialize handshake (``legacy``) and the 2026 per-request envelope (``auto``)."""
    async with mcp_client(f"{base_url}/mcp/ops", ops_key, mode=mode) as client:
        listed = (await client.list_tools()).tools

    by_name = {tool.name: tool for tool in listed}
    assert sorted(by_name) == ["flaky", "read_ticket", "restart_service", "ticket_stats"]  # not the triage agent
    granted = {t.name: t for t in ops.bots.get("ops").agent.granted()}
    assert by_name["restart_service"].input_schema == granted["restart_service"].parameters
    assert by_name["restart_service"].input_schema["properties"]["env"]["enum"] == ["dev", "staging", "prod"]
    assert by_name["read_ticket"].description == granted["read_ticket"].description
    assert by_name["read_ticket"].annotations is not None and by_name["read_ticket"].annotations.read_only_hint
    assert by_name["restart_service"].annotations is not None
    assert by_name["restart_service"].annotations.read_only_hint is False


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_an_allowed_call_runs_and_returns_text_or_structured_content(
    ops: Platform, base_url: str, ops_key: IssuedKey, mode: str
) -> None:
    async with mcp_client(f"{base_url}/mcp", ops_key, mode=mode) as client:  # /mcp: the key's one bot
        read = await client.call_tool("read_ticket", {"ticket_id": "T-7"})
        stats = await client.call_tool("ticket_stats", {"queue": "billing"})

    assert not read.is_error
    assert text_of(read) == "ticket T-7: the checkout service is slow"
    assert not stats.is_error
    assert stats.structured_content == {"queue": "billing", "open": 3, "oldest": "T-1"}
    assert '"open": 3' in text_of(stats)
    assert module().EXECUTED == ["read_ticket:T-7", "ticket_stats:billing"]

    rows = await audit_rows(ops, bot="ops")
    assert sorted((r.tool, r.decision, r.outcome) for r in rows) == [
        ("read_ticket", "allow", "ok"),
        ("ticket_stats", "allow", "ok"),
    ]
    assert {r.principal for r in rows} == {f"key:{ops_key.record.id}"}
    assert {r.agent_path for r in rows} == {"ops"}
    assert all(r.session_id is not None and r.session_id.startswith("mcp:") for r in rows)


async def test_a_policy_denied_call_is_an_error_result_with_the_reason_and_is_audited(
    ops: Platform, base_url: str, ops_key: IssuedKey
) -> None:
    async with mcp_client(f"{base_url}/mcp/ops", ops_key) as client:
        denied = await client.call_tool("restart_service", {"service": "checkout", "env": "prod"})
        allowed = await client.call_tool("restart_service", {"service": "checkout", "env": "dev"})

    assert denied.is_error
    assert text_of(denied) == "denied by policy prod:no-prod-writes: production is changed through a change request"
    assert not allowed.is_error and text_of(allowed) == "restarted checkout in dev"
    assert module().EXECUTED == ["restart_service:checkout:dev"]  # the denied call never ran

    rows = await audit_rows(ops, tool="restart_service", decision="deny")
    assert len(rows) == 1
    row = rows[0]
    assert (row.bot, row.agent_path, row.outcome, row.reasons) == ("ops", "ops", "denied", ("prod:no-prod-writes",))
    assert row.principal == f"key:{ops_key.record.id}"
    assert row.arguments == {"service": "checkout", "env": "prod"}


async def test_invalid_arguments_and_a_failing_tool_are_error_results(
    ops: Platform, base_url: str, ops_key: IssuedKey
) -> None:
    async with mcp_client(f"{base_url}/mcp/ops", ops_key, mode="legacy") as client:
        invalid = await client.call_tool("restart_service", {"service": ["checkout"], "env": "everywhere"})
        missing = await client.call_tool("read_ticket", {})
        broken = await client.call_tool("flaky", {})

    assert invalid.is_error
    assert text_of(invalid).startswith("invalid arguments for tool 'restart_service': env:")
    assert "'everywhere' is not one of" in text_of(invalid)
    assert "service: ['checkout'] is not of type 'string'" in text_of(invalid)
    assert missing.is_error and "'ticket_id' is a required property" in text_of(missing)
    assert broken.is_error
    assert text_of(broken) == "tool flaky failed (RuntimeError); see the server log"
    assert module().EXECUTED == []

    rows = await audit_rows(ops, bot="ops")
    assert sorted((r.tool, r.decision, r.outcome) for r in rows) == [
        ("flaky", "allow", "error"),
        ("read_ticket", "invalid", "rejected"),
        ("restart_service", "invalid", "rejected"),
    ]


async def test_a_tool_the_agent_was_not_given_is_a_protocol_error_and_audited(
    ops: Platform, base_url: str, ops_key: IssuedKey
) -> None:
    async with mcp_client(f"{base_url}/mcp/ops", ops_key) as client:
        with pytest.raises(MCPError) as raised:
            await client.call_tool("delete_database", {"name": "customers"})
        with pytest.raises(MCPError):
            await client.call_tool("triage", {"request": "sort the queue"})  # a sub-agent is not served

    assert raised.value.code == types.INVALID_PARAMS
    assert "has no tool named 'delete_database'" in raised.value.message
    assert "its tools: read_ticket, ticket_stats, restart_service, flaky" in raised.value.message
    rows = await audit_rows(ops, tool="delete_database")
    assert [(r.decision, r.outcome, r.principal) for r in rows] == [("deny", "denied", f"key:{ops_key.record.id}")]


async def test_a_callers_idempotency_key_reaches_the_tool_kept_apart_from_other_callers(
    ops: Platform, base_url: str, ops_key: IssuedKey
) -> None:
    other_key = await ops.api_keys.create(bot="ops", name="second-agent")
    meta: Any = {IDEMPOTENCY_META_KEY: "retry-1"}
    too_long: Any = {IDEMPOTENCY_META_KEY: "x" * 200}
    async with mcp_client(f"{base_url}/mcp/ops", ops_key) as client:
        await client.call_tool("ticket_stats", {"queue": "a"}, meta=meta)
        await client.call_tool("ticket_stats", {"queue": "a"}, meta=meta)
        await client.call_tool("ticket_stats", {"queue": "a"})
        with pytest.raises(MCPError) as raised:
            await client.call_tool("ticket_stats", {"queue": "a"}, meta=too_long)
    async with mcp_client(f"{base_url}/mcp/ops", other_key) as client:
        await client.call_tool("ticket_stats", {"queue": "a"}, meta=meta)

    first, again, fresh, other = module().KEYS
    assert first == again and first.endswith(":retry-1")  # a retry is the same call for the tool
    assert fresh != first and fresh.startswith("mcp:")
    assert other != first and other.endswith(":retry-1")  # another caller's key never collides with this one
    assert raised.value.code == types.INVALID_PARAMS


async def test_without_a_key_401_with_another_bots_key_403(ops: Platform, base_url: str, ops_key: IssuedKey) -> None:
    other_key = await ops.api_keys.create(bot="other", name="other-agent")
    any_bot_key = await ops.api_keys.create(bot=None, name="admin")
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    accept = {"accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient(base_url=base_url, trust_env=False) as http:
        anonymous = await http.post("/mcp/ops", json=initialize, headers=accept)
        foreign = await http.post(
            "/mcp/ops", json=initialize, headers={**accept, "authorization": f"Bearer {other_key.secret}"}
        )
        unnamed = await http.post(
            "/mcp", json=initialize, headers={**accept, "authorization": f"Bearer {any_bot_key.secret}"}
        )
        unknown = await http.post(
            "/mcp/nope", json=initialize, headers={**accept, "authorization": f"Bearer {any_bot_key.secret}"}
        )
        stream = await http.get("/mcp/ops", headers={**accept, "authorization": f"Bearer {ops_key.secret}"})

    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"
    assert foreign.status_code == 403
    assert foreign.json()["error"]["code"] == "forbidden"
    assert "may only use bot 'other', not 'ops'" in foreign.json()["error"]["message"]
    assert unnamed.status_code == 400
    assert "/mcp/BOT" in unnamed.json()["error"]["message"] and "ops" in unnamed.json()["error"]["message"]
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "bot_not_found"
    assert (stream.status_code, stream.headers["allow"]) == (405, "POST")

    # The official client sees the same refusal, and nothing was called or audited.
    with pytest.raises(BaseExceptionGroup) as refused:
        async with mcp_client(f"{base_url}/mcp/ops", other_key, mode="legacy") as client:
            await client.list_tools()
    assert refused.group_contains(MCPError, depth=2)
    assert await audit_rows(ops, bot="ops") == []


async def test_a_key_for_every_bot_names_the_bot_in_the_path(ops: Platform, base_url: str) -> None:
    any_bot_key = await ops.api_keys.create(bot=None, name="admin")
    async with mcp_client(f"{base_url}/mcp/other", any_bot_key) as client:
        assert (await client.list_tools()).tools == []  # the other bot's agent has no tools
    async with mcp_client(f"{base_url}/mcp/ops", any_bot_key) as client:
        result = await client.call_tool("read_ticket", {"ticket_id": "T-9"})
    assert text_of(result) == "ticket T-9: the checkout service is slow"
