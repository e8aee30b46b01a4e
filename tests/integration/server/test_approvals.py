"""Approvals end to end: a tool that needs a person's yes pauses the turn durably, and the decision resumes it.

The turn must hold no worker while it waits, resume on whichever worker claims the session after the decision
(here: a second platform on the same database, after the first one stopped), run the tool exactly once when
approved, never when denied or expired, and audit the decision.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from approval_bot import OPS_BOT, executed
from serving import serving

from botfactory.config import Settings
from botfactory.memory import OnnxMiniLMEmbedder
from botfactory.server import Platform
from botfactory.store import ApprovalRecord, AuditQuery
from botfactory.testing import ScriptedModel, call, scripted_inference

pytestmark = pytest.mark.integration


@pytest.fixture
def start(
    tmp_path: Path, seeded_database: Path, embedder: OnnxMiniLMEmbedder, scripted: dict[str, ScriptedModel]
) -> Callable[..., Any]:
    bots_dir = tmp_path / "bots"
    bots_dir.mkdir()
    (bots_dir / "ops.py").write_text(textwrap.dedent(OPS_BOT))
    shutil.copy(seeded_database, tmp_path / "botfactory.db")

    async def started(**gateway: Any) -> Platform:
        settings = Settings.load(home=tmp_path, github_org="example-org", bots_dir=bots_dir, gateway=gateway)
        return await Platform.start(settings, inference=scripted_inference(scripted), embedder=embedder)

    return started


@pytest.fixture
async def ops(start: Callable[..., Any]) -> AsyncIterator[Platform]:
    platform = await start()
    try:
        yield platform
    finally:
        await platform.aclose()


async def pending(platform: Platform, *, within: float = 10.0) -> ApprovalRecord:
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        found = await platform.runtime.approvals(status="pending")
        if found and platform.worker is not None and platform.worker.running == 0:
            return found[0]
        await asyncio.sleep(0.02)
    raise AssertionError("no approval request was parked")


async def reply(platform: Platform, session_id: str, *, within: float = 10.0) -> str:
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        view = await platform.runtime.session(session_id)
        done = [t for t in view.turns if t.status not in ("running", "queued")]
        if done:
            return str(done[-1].reply)
        await asyncio.sleep(0.02)
    raise AssertionError("the turn did not finish")


async def test_approved_through_the_api_the_tool_runs_once_and_the_turn_finishes(
    ops: Platform, scripted: dict[str, ScriptedModel]
) -> None:
    scripted["large"].script = [call("restart_service", service="checkout"), "Restarted checkout."]
    await ops.runtime.enqueue("ops", session_id="ap-1", text="restart checkout", user_id="slack:T1:U1")

    request = await pending(ops)
    assert (request.tool, request.requester, request.arguments) == (
        "restart_service",
        "slack:T1:U1",
        {"service": "checkout"},
    )
    assert executed() == []  # nothing runs before the decision, and no worker holds the turn

    async with serving(ops) as base_url, httpx.AsyncClient(base_url=base_url) as client:
        bad = await client.post(f"/v1/approvals/{request.id}", json={"decision": "maybe"})
        assert bad.status_code == 400
        decided = await client.post(f"/v1/approvals/{request.id}", json={"decision": "approve", "reason": "ok"})
        assert decided.status_code == 200, decided.text
        assert decided.json()["status"] == "approved" and decided.json()["decided_by"] == "local"
        again = await client.post(f"/v1/approvals/{request.id}", json={"decision": "deny"})
        assert again.status_code == 409

    assert await reply(ops, "ap-1") == "Restarted checkout."
    assert executed() == ["checkout"]
    rows = await ops.engine.gateway.audit.list(AuditQuery(session_id="ap-1"))  # type: ignore[union-attr]
    assert [(r.outcome, r.approval) for r in rows] == [("ok", "approved"), ("approval_pending", "pending")]


async def test_denied_the_tool_never_runs_and_the_model_is_told_why(
    ops: Platform, scripted: dict[str, ScriptedModel]
) -> None:
    scripted["large"].script = [call("restart_service", service="db"), "I was not allowed to."]
    await ops.runtime.enqueue("ops", session_id="ap-2", text="restart db", user_id="slack:T1:U1")
    request = await pending(ops)
    await ops.runtime.decide_approval(request.id, approve=False, by="slack:T1:UADMIN", reason="change freeze")
    assert await reply(ops, "ap-2") == "I was not allowed to."
    assert executed() == []
    tool_result = [m.content for m in scripted["large"].requests[-1].messages if m.role == "tool"]
    assert tool_result == ["error: not approved: slack:T1:UADMIN denied restart_service: change freeze"]


async def test_an_expired_request_continues_the_turn_with_not_approved(
    start: Callable[..., Any], scripted: dict[str, ScriptedModel]
) -> None:
    platform = await start(approval_timeout_s=0.5)
    try:
        scripted["large"].script = [call("restart_service", service="cache"), "Nobody approved it."]
        await platform.runtime.enqueue("ops", session_id="ap-3", text="restart cache", user_id="u1")
        assert await reply(platform, "ap-3") == "Nobody approved it."
        assert executed() == []
        (request,) = await platform.runtime.approvals()
        assert request.status == "expired"
        tool_result = [m.content for m in scripted["large"].requests[-1].messages if m.role == "tool"]
        assert tool_result == ["error: not approved: nobody approved restart_service in time, so it was not run"]
    finally:
        await platform.aclose()


async def test_the_turn_resumes_on_another_worker_after_the_decision(
    start: Callable[..., Any], scripted: dict[str, ScriptedModel]
) -> None:
    first = await start()
    scripted["large"].script = [call("restart_service", service="search"), "Done."]
    await first.runtime.enqueue("ops", session_id="ap-4", text="restart search", user_id="u1")
    request = await pending(first)
    await first.aclose()  # the worker that started the turn is gone

    second = await start()
    try:
        await second.runtime.decide_approval(request.id, approve=True, by="cli:ops")
        assert await reply(second, "ap-4") == "Done."
        assert executed() == ["search"]
    finally:
        await second.aclose()


async def test_nobody_approves_their_own_request_and_approvers_are_configured(ops: Platform) -> None:
    scripted_request = ApprovalRecord(
        id="0",
        call_key="t:1",
        session_id="s",
        turn_id="t",
        bot="ops",
        agent_path="ops",
        tool="restart_service",
        arguments={},
        requester="slack:T1:U1",
        status="pending",
        decided_by=None,
        reason=None,
        notice=None,
        created_at=0,
        expires_at=1,
        decided_at=None,
    )
    with pytest.raises(Exception, match="nobody approves their own request"):
        ops.runtime.check_approver(scripted_request, "slack:T1:U1", trusted=True)
    with pytest.raises(Exception, match=r"add them to \[gateway.approvers\] ops"):
        ops.runtime.check_approver(scripted_request, "slack:T1:U9")
    ops.settings.gateway.approvers["ops"] = ["slack:T1:U9"]
    ops.runtime.check_approver(scripted_request, "slack:T1:U9")


POLICY_ASKS_BOT = '''
from botfactory.agents import Agent, Bot, tool

SCALED: list[int] = []


@tool(side_effect="write")
def scale(replicas: int) -> str:
    """Scale the service.

    Args:
        replicas: How many.
    """
    SCALED.append(replicas)
    return f"scaled to {replicas}"


bot = Bot(name="scaler", agent=Agent(name="scaler", instructions="You scale.", model="large", tools=[scale]))
'''

ASK_POLICY = """
@id("big-scale")
@approval("required")
@reason("more than 10 replicas needs a second pair of eyes")
forbid(principal, action, resource == Tool::"scale") when { context.arguments has replicas && context.arguments.replicas > 10 };
"""


async def test_a_policy_can_ask_for_an_approval_instead_of_denying(
    tmp_path: Path, seeded_database: Path, embedder: OnnxMiniLMEmbedder, scripted: dict[str, ScriptedModel]
) -> None:
    bots_dir = tmp_path / "bots"
    (bots_dir / "scaler" / "policies").mkdir(parents=True)
    (bots_dir / "scaler.py").write_text(textwrap.dedent(POLICY_ASKS_BOT))
    (bots_dir / "scaler" / "policies" / "scale.cedar").write_text(ASK_POLICY)
    shutil.copy(seeded_database, tmp_path / "botfactory.db")
    settings = Settings.load(home=tmp_path, bots_dir=bots_dir)
    platform = await Platform.start(settings, inference=scripted_inference(scripted), embedder=embedder)
    try:
        scripted["large"].script = [call("scale", replicas=3), call("scale", replicas=50), "Scaled."]
        await platform.runtime.enqueue("scaler", session_id="ap-5", text="scale up", user_id="u1")
        request = await pending(platform)
        module: Any = sys.modules["botfactory_user_bots.scaler"]
        assert module.SCALED == [3]  # the small one ran at once; the big one waits
        assert (request.tool, request.arguments) == ("scale", {"replicas": 50})
        await platform.runtime.decide_approval(request.id, approve=True, by="key:ops")
        assert await reply(platform, "ap-5") == "Scaled."
        assert module.SCALED == [3, 50]
        rows = await platform.engine.gateway.audit.list(AuditQuery(session_id="ap-5"))  # type: ignore[union-attr]
        assert [(r.decision, r.outcome, r.approval) for r in rows] == [
            ("ask", "ok", "approved"),
            ("ask", "approval_pending", "pending"),
            ("allow", "ok", None),
        ]
        assert rows[0].reasons == ("scale:big-scale",)
    finally:
        await platform.aclose()
