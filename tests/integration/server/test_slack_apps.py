"""Several Slack apps in one deployment, and the "thinking…" placeholder the reply replaces in place."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from slack_rig import TOKEN, SlackRig, slack_rig

from botfactory.config import DEFAULT_SLACK_THINKING, SlackAppConfig
from botfactory.memory import OnnxMiniLMEmbedder
from botfactory.testing import SlackPost, SlackStandIn, message_event, run_standin_server

ALPHA_SECRET, BETA_SECRET = "alpha-signing-secret", "beta-signing-secret"
LOUD_BOT = """
from botfactory.agents import Agent, Bot

bot = Bot(name="loud", agent=Agent(name="loud", instructions="Repeat the user, loudly.", model="small"))
"""


@pytest.fixture
def slack() -> Iterator[tuple[SlackStandIn, str]]:
    """The conftest's stand-in, also accepting the two apps' tokens."""
    standin = SlackStandIn(token=TOKEN, tokens=("xoxb-alpha", "xoxb-beta"))
    with run_standin_server(standin) as url:
        yield standin, url


def two_apps(url: str) -> dict[str, SlackAppConfig]:
    return {
        "alpha": SlackAppConfig(
            signing_secret=SecretStr(ALPHA_SECRET),
            bot_token=SecretStr("xoxb-alpha"),
            bot="echo",
            api_app_id="AALPHA",
            api_url=f"{url}/api/",
            thinking_text=None,
        ),
        "beta": SlackAppConfig(
            signing_secret=SecretStr(BETA_SECRET),
            bot_token=SecretStr("xoxb-beta"),
            bot="loud",
            channels=["C7"],
            api_url=f"{url}/api/",
            thinking_text=None,
        ),
    }


@pytest.fixture
async def rig(
    tmp_path: Path, embedder: OnnxMiniLMEmbedder, seeded_database: Path, slack: tuple[SlackStandIn, str]
) -> AsyncIterator[SlackRig]:
    """Replaces the conftest's rig: the echo bot answering app ``alpha``, the loud bot app ``beta``."""
    standin, url = slack
    (tmp_path / "bots").mkdir()
    (tmp_path / "bots" / "loud.py").write_text(LOUD_BOT)
    async with slack_rig(
        tmp_path,
        embedder,
        seeded_database,
        standin,
        url,
        slack_signing_secret=None,
        slack_bot_token=None,
        slack_apps=two_apps(url),
    ) as rig:
        yield rig


async def test_two_apps_answer_with_their_own_bot_and_post_with_their_own_token(rig: SlackRig) -> None:
    assert rig.platform.slack is not None and sorted(app.name for app in rig.platform.slack) == ["alpha", "beta"]
    alpha = message_event("from alpha", channel="C1", ts="1700000100.000100", api_app_id="AALPHA")
    beta = message_event("from beta", channel="C7", ts="1700000101.000100", event_id="Ev2")  # no app id: by secret
    assert (await rig.send(alpha, secret=ALPHA_SECRET)).status_code == 200
    assert (await rig.send(beta, secret=BETA_SECRET)).status_code == 200
    await rig.wait_posts(2)
    by_thread = {p.thread_ts: p for p in rig.slack.posts}
    assert (by_thread["1700000100.000100"].token, by_thread["1700000100.000100"].text) == (
        "xoxb-alpha",
        "echo: from alpha",
    )
    assert (by_thread["1700000101.000100"].token, by_thread["1700000101.000100"].channel) == ("xoxb-beta", "C7")
    bots = {s.id: s.bot for s in await rig.platform.store.list_sessions()}
    assert bots == {"T1:C1:1700000100.000100": "echo", "T1:C7:1700000101.000100": "loud"}


async def test_a_request_no_app_signed_or_signed_by_another_app_than_it_names_is_refused(rig: SlackRig) -> None:
    unknown = await rig.send(message_event("hi"), secret="nobodys-secret")
    assert unknown.status_code == 401
    assert "no configured Slack app" in unknown.json()["error"]["message"]
    # names alpha's app id but carries beta's signature: alpha's secret alone decides
    crossed = await rig.send(message_event("hi", api_app_id="AALPHA"), secret=BETA_SECRET)
    assert crossed.status_code == 401
    assert await rig.sessions() == []


@pytest.fixture
async def thinking(
    tmp_path: Path, embedder: OnnxMiniLMEmbedder, seeded_database: Path, slack: tuple[SlackStandIn, str]
) -> AsyncIterator[SlackRig]:
    standin, url = slack
    async with slack_rig(
        tmp_path, embedder, seeded_database, standin, url, slack_thinking_text=DEFAULT_SLACK_THINKING, latency_s=0.3
    ) as rig:
        yield rig


async def test_the_thinking_placeholder_is_replaced_in_place_by_the_reply(thinking: SlackRig) -> None:
    changes: list[tuple[str, SlackPost]] = []
    thinking.slack.on_change = lambda change, post: changes.append((change, post))
    ts = "1700000200.000100"
    await thinking.send(message_event("hello", ts=ts))
    await thinking.wait_posts(1, text="echo: hello")
    await asyncio.sleep(0.2)
    assert [(p.thread_ts, p.text) for p in thinking.slack.posts] == [(ts, "echo: hello")]  # one message in the thread
    assert [(change, post.text) for change, post in changes] == [
        ("posted", DEFAULT_SLACK_THINKING),
        ("updated", "echo: hello"),
    ]
    assert changes[0][1].ts == changes[1][1].ts
    view = await thinking.platform.runtime.session(f"T1:C1:{ts}")
    assert [r.status for r in view.outbox] == ["delivered"]


async def test_a_rate_limited_placeholder_does_not_stop_the_reply(thinking: SlackRig) -> None:
    await thinking.identified()
    thinking.slack.rate_limit = 1  # the placeholder's chat.postMessage is answered 429
    await thinking.send(message_event("hello", ts="1700000201.000100"))
    await thinking.wait_posts(1, text="echo: hello")
    await asyncio.sleep(0.2)
    assert thinking.slack.limited == 1
    assert [p.text for p in thinking.slack.posts] == ["echo: hello"]


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)], ids=["sqlite", "postgresql"]
)
async def test_a_resumed_turn_reuses_its_placeholder_and_posts_none_again(
    tmp_path: Path,
    embedder: OnnxMiniLMEmbedder,
    seeded_database: Path,
    slack: tuple[SlackStandIn, str],
    backend: str,
    request: pytest.FixtureRequest,
) -> None:
    standin, url = slack
    fast_leases: dict[str, Any] = {
        "runtime": {"lease_s": 0.5, "heartbeat_s": 0.1},
        "slack_thinking_text": DEFAULT_SLACK_THINKING,
        # the placeholder is recorded with the inbox message: on PostgreSQL too
        "database_url": request.getfixturevalue("postgres_url") if backend == "postgresql" else None,
    }
    async with slack_rig(tmp_path, embedder, seeded_database, standin, url, latency_s=30, **fast_leases) as crashing:
        await crashing.send(message_event("hello", ts="1700000202.000100"))
        await crashing.wait_posts(1, text=DEFAULT_SLACK_THINKING)
        assert crashing.platform.worker is not None
        await crashing.platform.worker.abort()  # a crash mid-turn: the lease is left to expire
        # Only the crashed worker's short lease is under test: the resuming one holds a long lease, so a pause on a
        # loaded machine cannot let it lapse mid-turn and count a second resume.
        resuming = {**fast_leases, "runtime": {"lease_s": 10, "heartbeat_s": 1}}
        async with slack_rig(tmp_path, embedder, seeded_database, standin, url, role="worker", **resuming) as other:
            await other.wait_posts(1, text="echo: hello", within=15)
            assert other.platform.worker is not None and other.platform.worker.stats.resumed == 1
        await asyncio.sleep(0.2)
    assert [p.text for p in standin.posts] == ["echo: hello"]
    assert standin.calls.count("chat.postMessage") == 1  # the placeholder, once; the reply was an update
    assert standin.calls.count("chat.update") == 1


async def test_a_placeholder_whose_turn_ends_without_a_reply_is_deleted(thinking: SlackRig) -> None:
    ts = "1700000203.000100"
    await thinking.send(message_event("hello", ts=ts))
    await thinking.wait_posts(1, text=DEFAULT_SLACK_THINKING)
    await thinking.platform.runtime.cancel(f"T1:C1:{ts}")
    deadline = time.monotonic() + 10
    while thinking.slack.posts:
        assert time.monotonic() < deadline, thinking.slack.posts
        await asyncio.sleep(0.02)
    assert "chat.delete" in thinking.slack.calls


PATIENT_BOT = """
from botfactory.agents import Agent, Bot

bot = Bot(name="patient", agent=Agent(name="patient", instructions="Repeat.", model="small"), double_texting="coalesce")
"""


async def test_a_stale_replys_placeholder_is_deleted_and_the_newer_turn_shows_its_own(
    tmp_path: Path, embedder: OnnxMiniLMEmbedder, seeded_database: Path, slack: tuple[SlackStandIn, str]
) -> None:
    standin, url = slack
    (tmp_path / "bots").mkdir()
    (tmp_path / "bots" / "patient.py").write_text(PATIENT_BOT)
    async with slack_rig(
        tmp_path,
        embedder,
        seeded_database,
        standin,
        url,
        slack_bot="patient",
        slack_thinking_text=DEFAULT_SLACK_THINKING,
        latency_s=0.5,
    ) as rig:
        root = "1700000204.000100"
        await rig.send(message_event("first", ts=root))
        await rig.wait_posts(1, text=DEFAULT_SLACK_THINKING)
        await rig.send(message_event("second", ts="1700000205.000100", thread_ts=root, event_id="Ev2"))
        await rig.wait_posts(1, text="echo: second", within=15)
        await asyncio.sleep(0.3)
        assert [(p.thread_ts, p.text) for p in rig.slack.posts] == [(root, "echo: second")]
        assert "chat.delete" in rig.slack.calls  # the first turn's placeholder went with its stale reply
        view = await rig.platform.runtime.session(f"T1:C1:{root}")
        assert sorted(r.status for r in view.outbox) == ["delivered", "stale"]
