"""The Slack channel end to end: signed events in through the app, replies out to a Slack stand-in's thread."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from slack_rig import SlackRig, slack_rig

from botfactory.channels import SlackIdentity
from botfactory.memory import OnnxMiniLMEmbedder
from botfactory.testing import SlackStandIn, message_event


async def test_url_verification_is_answered_with_the_challenge(rig: SlackRig) -> None:
    response = await rig.send(
        {"type": "url_verification", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}
    )
    assert response.status_code == 200
    assert response.text == "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"


async def test_a_message_is_answered_once_in_its_thread_whatever_slack_sends(rig: SlackRig) -> None:
    ts = "1700000001.000200"
    mention = message_event("<@UBOT> hello", ts=ts, event_id="Ev1", kind="app_mention")
    message = message_event("<@UBOT> hello", ts=ts, event_id="Ev2")
    for payload, retry in ((mention, None), (message, None), (mention, 1), (mention, 2), (message, 1)):
        options: dict[str, Any] = {"retry_num": retry} if retry is not None else {}
        response = await rig.send(payload, **options)
        assert response.status_code == 200
    await rig.wait_posts(1)
    await asyncio.sleep(0.3)  # room for a duplicate to show up
    assert [(p.channel, p.thread_ts, p.text) for p in rig.slack.posts] == [("C1", ts, "echo: <@UBOT> hello")]
    assert await rig.sessions() == [f"T1:C1:{ts}"]
    view = await rig.platform.runtime.session(f"T1:C1:{ts}")
    assert [m.role for m in view.messages] == ["user", "assistant"]
    assert [r.status for r in view.outbox] == ["delivered"]


async def test_a_reply_in_a_thread_continues_that_threads_session(rig: SlackRig) -> None:
    root = "1700000002.000100"
    await rig.send(message_event("first", ts=root, event_id="Ev10"))
    await rig.wait_posts(1)
    await rig.send(message_event("second", ts="1700000003.000100", thread_ts=root, event_id="Ev11"))
    await rig.wait_posts(2)
    assert [(p.thread_ts, p.text) for p in rig.slack.posts] == [(root, "echo: first"), (root, "echo: second")]
    assert await rig.sessions() == [f"T1:C1:{root}"]


async def test_a_quarantined_threads_messages_are_acknowledged_and_make_no_turn(rig: SlackRig) -> None:
    root = "1700000004.000100"
    await rig.send(message_event("first", ts=root, event_id="Ev20"))
    await rig.wait_posts(1)
    assert await rig.platform.runtime.quarantine_session(f"T1:C1:{root}")

    response = await rig.send(message_event("more", ts="1700000005.000100", thread_ts=root, event_id="Ev21"))

    assert response.status_code == 200  # an error would only make Slack send it three more times
    await asyncio.sleep(0.3)  # room for a turn to show up
    assert [p.text for p in rig.slack.posts] == ["echo: first"]
    view = await rig.platform.runtime.session(f"T1:C1:{root}")
    assert [m.text for m in view.messages] == ["first", "echo: first"]


@pytest.mark.parametrize(
    "extra",
    [
        {"subtype": "message_changed"},
        {"subtype": "message_deleted"},
        {"subtype": "bot_message", "bot_id": "B2"},
        {"bot_id": "B1"},  # our own reply, echoed back by Slack
        {"channel": "C9"},  # a channel the bot is not configured for
    ],
    ids=["edit", "deletion", "other bot", "own message", "other channel"],
)
async def test_messages_that_are_not_a_human_asking_make_no_turn(rig: SlackRig, extra: dict[str, str]) -> None:
    payload = message_event("hello", ts="1700000004.000100")
    payload["event"] = {**payload["event"], **extra}
    response = await rig.send(payload)
    assert response.status_code == 200
    await asyncio.sleep(0.2)
    assert await rig.sessions() == []
    assert rig.slack.posts == []


@pytest.mark.parametrize("problem", ["wrong secret", "stale", "unsigned"])
async def test_an_unverified_request_is_refused_with_401_and_writes_nothing(rig: SlackRig, problem: str) -> None:
    payload = message_event("hello")
    if problem == "unsigned":
        response = await rig.client.post("/slack/events", json=payload)
    elif problem == "stale":
        response = await rig.send(payload, timestamp=int(time.time()) - 600)
    else:
        response = await rig.send(payload, secret="not-the-secret")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_signature"
    assert await rig.sessions() == []


async def test_a_rate_limited_reply_is_posted_once_after_retry_after(rig: SlackRig) -> None:
    await rig.identified()
    rig.slack.rate_limit, rig.slack.retry_after_s = 1, 1
    started = time.monotonic()
    await rig.send(message_event("hello", ts="1700000005.000100"))
    await rig.wait_posts(1, within=15)
    assert rig.slack.limited == 1
    assert time.monotonic() - started >= 1.0  # Retry-After was honoured
    await asyncio.sleep(0.3)
    assert len(rig.slack.posts) == 1


async def test_the_apps_own_messages_make_no_turn_once_auth_test_named_its_user(rig: SlackRig) -> None:
    await rig.identified()
    assert rig.platform.slack is not None
    assert rig.platform.slack.identity("default") == SlackIdentity(user_id="UBOT", bot_id="B1")
    # the app's own post without a bot_id (e.g. a message it sent as a user): only auth.test can tell
    assert (await rig.send(message_event("I said this", user="UBOT", ts="1700000006.000100"))).status_code == 200
    assert (await rig.send(message_event("a human", user="U2", ts="1700000007.000100"))).status_code == 200
    await rig.wait_posts(1)
    await asyncio.sleep(0.2)
    assert [p.text for p in rig.slack.posts] == ["echo: a human"]
    assert await rig.sessions() == ["T1:C1:1700000007.000100"]


async def test_a_failing_auth_test_leaves_the_channel_working(
    tmp_path: Path, embedder: OnnxMiniLMEmbedder, seeded_database: Path, slack: tuple[SlackStandIn, str]
) -> None:
    standin, url = slack
    standin.rate_limit = 1  # the first call, auth.test, is refused
    async with slack_rig(tmp_path, embedder, seeded_database, standin, url) as rig:
        await rig.send(message_event("hello", ts="1700000008.000100"))
        await rig.wait_posts(1, within=15)
        assert rig.slack.calls[0] == "auth.test"
        assert rig.platform.slack is not None and rig.platform.slack.identity("default") is None
        assert [p.text for p in rig.slack.posts] == ["echo: hello"]
