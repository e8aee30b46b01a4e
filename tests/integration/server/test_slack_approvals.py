"""Approvals through Slack: the request is posted in the thread with buttons; only an approver's click decides it.

Real signed requests to ``/slack/interactions`` and the real ``slack_sdk`` client against the Slack stand-in.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from approval_bot import OPS_BOT, executed
from slack_rig import SlackRig, slack_rig

from botfactory.channels import APPROVE_ACTION, DENY_ACTION
from botfactory.memory import OnnxMiniLMEmbedder
from botfactory.testing import ScriptedModel, SlackPost, SlackStandIn, action_payload, call, message_event

pytestmark = pytest.mark.integration


@pytest.fixture
async def ops_rig(
    tmp_path: Path, embedder: OnnxMiniLMEmbedder, seeded_database: Path, slack: tuple[SlackStandIn, str]
) -> AsyncIterator[SlackRig]:
    (tmp_path / "bots").mkdir()
    (tmp_path / "bots" / "ops.py").write_text(OPS_BOT)
    large = ScriptedModel([call("restart_service", service="checkout"), "Restarted checkout."])
    async with slack_rig(
        tmp_path,
        embedder,
        seeded_database,
        *slack,
        slack_bot="ops",
        large=large,
        gateway={"approvers": {"ops": ["slack:T1:U9"]}},
    ) as rig:
        yield rig


async def approval_post(rig: SlackRig, within: float = 10.0) -> SlackPost:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for post in rig.slack.posts:
            if post.blocks and any(b.get("type") == "actions" for b in post.blocks):
                return post
        await asyncio.sleep(0.02)
    raise AssertionError(f"no approval request was posted: {rig.slack.posts}")


def buttons(post: SlackPost) -> dict[str, str]:
    actions = next(b for b in post.blocks or [] if b.get("type") == "actions")
    return {e["action_id"]: e["value"] for e in actions["elements"]}


async def test_only_an_approvers_click_decides_and_the_turn_finishes_in_the_thread(ops_rig: SlackRig) -> None:
    rig = ops_rig
    response = await rig.send(message_event("restart checkout", user="U1", ts="1700000500.000100"))
    assert response.status_code == 200

    post = await approval_post(rig)
    assert post.thread_ts == "1700000500.000100" and post.channel == "C1"
    assert "wants to call restart_service for <@U1>" in post.text
    ids = buttons(post)
    assert set(ids) == {APPROVE_ACTION, DENY_ACTION} and len(set(ids.values())) == 1
    approval_id = ids[APPROVE_ACTION]

    def click(user: str, action_id: str = APPROVE_ACTION, action_ts: str = "1.1") -> dict[str, Any]:
        return action_payload(
            action_id,
            value=approval_id,
            user=user,
            message_ts=post.ts,
            thread_ts=post.thread_ts,
            action_ts=action_ts,
        )

    assert (await rig.click(click("U1", action_ts="1.1"))).status_code == 200  # the requester
    assert (await rig.click(click("U5", action_ts="1.2"))).status_code == 200  # not an approver
    assert [(e.user, e.text.split(";")[0]) for e in rig.slack.ephemeral] == [
        ("U1", "nobody approves their own request"),
        ("U5", "slack:T1:U5 may not decide approvals of bot ops"),
    ]
    assert executed() == []
    assert (await rig.platform.runtime.approval(approval_id)).status == "pending"

    assert (await rig.click(click("U9", action_ts="1.3"))).status_code == 200
    await rig.wait_posts(2, text="Restarted checkout.")
    updated = next(p for p in rig.slack.posts if p.ts == post.ts)
    assert updated.text.startswith("Approved by <@U9>")
    assert updated.blocks is not None and not any(b.get("type") == "actions" for b in updated.blocks)
    assert executed() == ["checkout"]
    decided = await rig.platform.runtime.approval(approval_id)
    assert (decided.status, decided.decided_by) == ("approved", "slack:T1:U9")

    assert (await rig.click(click("U9", DENY_ACTION, action_ts="1.4"))).status_code == 200  # too late
    assert rig.slack.ephemeral[-1].text.startswith(f"approval request {approval_id} is already approved")
    assert executed() == ["checkout"]
