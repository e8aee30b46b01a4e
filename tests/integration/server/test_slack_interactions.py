"""``POST /slack/interactions``: a signed button click is acknowledged at once and handed to its handler."""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

import pytest
from slack_rig import SECRET, SlackRig

from botfactory.channels import SlackAction
from botfactory.runtime import Runtime
from botfactory.testing import action_payload, sign, signed_interaction


@pytest.fixture
def clicks(rig: SlackRig) -> list[SlackAction]:
    """Actions whose ``action_id`` starts with ``approve:``; each enqueues a message to the session's bot."""
    seen: list[SlackAction] = []

    async def approve(action: SlackAction, runtime: Runtime) -> None:
        seen.append(action)
        await runtime.enqueue(
            action.bot,
            session_id=f"{action.team}:{action.channel}:{action.thread_ts}",
            text=f"approved {action.value}",
            dedup_key=action.dedup_key,
        )

    assert rig.platform.slack is not None
    rig.platform.slack.interactions.register("approve:", approve)
    return seen


async def test_a_click_is_acknowledged_and_its_handler_gets_the_action(
    rig: SlackRig, clicks: list[SlackAction]
) -> None:
    payload = action_payload(
        "approve:42",
        value="seat-mona",
        channel="C2",
        user="U7",
        message_ts="1700000300.000100",
        thread_ts="1700000299.1",
    )
    started = time.monotonic()
    response = await rig.click(payload)
    assert (response.status_code, response.content) == (200, b"")
    assert time.monotonic() - started < 3  # Slack's limit
    [action] = clicks
    assert (action.app, action.bot, action.team, action.channel, action.user) == ("default", "echo", "T1", "C2", "U7")
    assert (action.action_id, action.value, action.message_ts, action.thread_ts) == (
        "approve:42",
        "seat-mona",
        "1700000300.000100",
        "1700000299.1",
    )
    assert action.trigger_id == "1.2.abc" and action.response_url is not None
    assert await rig.sessions() == ["T1:C2:1700000299.1"]


async def test_a_repeated_click_delivery_reaches_the_handler_once(rig: SlackRig, clicks: list[SlackAction]) -> None:
    payload = action_payload("approve:1", value="x")
    for _ in range(3):
        assert (await rig.click(payload)).status_code == 200
    assert len(clicks) == 1
    [session] = await rig.platform.store.list_sessions()
    assert len((await rig.platform.runtime.session(session.id)).messages) >= 1
    assert len(await rig.platform.runtime_stack.queue.inbox_items(session.id)) == 1


async def test_an_action_nobody_handles_is_acknowledged_and_does_nothing(
    rig: SlackRig, clicks: list[SlackAction], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("INFO", logger="botfactory.channels.slack_interactions"):
        response = await rig.click(action_payload("vote:up"))
    assert response.status_code == 200
    assert clicks == [] and await rig.sessions() == []
    assert "no handler for this action" in caplog.text


async def test_other_interaction_types_are_acknowledged(rig: SlackRig, clicks: list[SlackAction]) -> None:
    response = await rig.click({"type": "view_submission", "team": {"id": "T1"}, "user": {"id": "U1"}})
    assert response.status_code == 200 and clicks == []


@pytest.mark.parametrize("problem", ["unsigned", "wrong secret", "stale", "tampered"])
async def test_an_unverified_interaction_is_refused_with_401(
    rig: SlackRig, clicks: list[SlackAction], problem: str
) -> None:
    body, headers = signed_interaction(action_payload("approve:1"), SECRET)
    if problem == "unsigned":
        headers = {"content-type": headers["content-type"]}
    elif problem == "wrong secret":
        body, headers = signed_interaction(action_payload("approve:1"), "not-the-secret")
    elif problem == "stale":
        body, headers = signed_interaction(action_payload("approve:1"), SECRET, timestamp=int(time.time()) - 600)
    else:
        body = body.replace(b"approve", b"approvf")
    response = await rig.client.post("/slack/interactions", content=body, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_signature"
    assert clicks == []


@pytest.mark.parametrize(
    "body",
    [
        b"not a form at all \xff",
        urlencode({"other": "x"}).encode(),
        urlencode({"payload": "{not json"}).encode(),
        urlencode({"payload": "[1, 2]"}).encode(),
        urlencode({"payload": json.dumps({"type": "block_actions", "team": {"id": "T1"}})}).encode(),
        urlencode({"payload": json.dumps({**action_payload("approve:1"), "actions": [{"value": "no id"}]})}).encode(),
    ],
    ids=["binary", "no payload", "payload not json", "payload not object", "no user or actions", "no action_id"],
)
async def test_a_signed_but_malformed_interaction_is_refused_with_400(
    rig: SlackRig, clicks: list[SlackAction], body: bytes
) -> None:
    headers = {"content-type": "application/x-www-form-urlencoded", **sign(body, SECRET)}
    response = await rig.client.post("/slack/interactions", content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"]
    assert clicks == []
