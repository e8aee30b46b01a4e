"""The Slack path end to end with the real support bot: a signed event into a real server, the reply in the thread.

The default tests script the support bot's models (its router, knowledge specialist, docs search and citations
run for real); the ``model`` test asks the real local models one question.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from pydantic import SecretStr

from botfactory.config import DEFAULT_SLACK_THINKING, Settings
from botfactory.inference import Inference
from botfactory.memory import OnnxMiniLMEmbedder
from botfactory.server import Platform, create_app, open_knowledge
from botfactory.store import Store
from botfactory.testing import (
    ScriptedModel,
    SlackPost,
    SlackStandIn,
    call,
    final,
    message_event,
    run_standin_server,
    scripted_inference,
    signed_event,
)

pytestmark = pytest.mark.integration

SECRET = "e2e-signing-secret"
TOKEN = "xoxb-e2e"


@pytest.fixture(scope="module")
def seeded_database(tmp_path_factory: pytest.TempPathFactory, embedder: OnnxMiniLMEmbedder) -> Path:
    """A database with the support bot's shipped docs in the default knowledge base."""
    path = tmp_path_factory.mktemp("slack-e2e") / "botfactory.db"

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


@dataclass
class Served:
    platform: Platform
    base_url: str
    slack: SlackStandIn
    changes: list[tuple[str, SlackPost]]

    async def send(self, payload: dict[str, Any], **options: int) -> httpx.Response:
        body, headers = signed_event(payload, SECRET, **options)
        async with httpx.AsyncClient() as client:
            return await client.post(f"{self.base_url}/slack/events", content=body, headers=headers)

    async def wait_reply(self, *, within: float) -> SlackPost:
        """The one post in the stand-in once it no longer shows the placeholder."""
        deadline = time.monotonic() + within
        while not self.slack.posts or self.slack.posts[-1].text == DEFAULT_SLACK_THINKING:
            assert time.monotonic() < deadline, self.slack.posts
            await asyncio.sleep(0.05)
        [post] = self.slack.posts
        return post


@contextlib.asynccontextmanager
async def serve_support(
    home: Path, embedder: OnnxMiniLMEmbedder, slack: tuple[SlackStandIn, str], inference: Inference | None
) -> AsyncIterator[Served]:
    """``botfactory up`` with only the two Slack variables set (and the stand-in as Slack), on a real server."""
    standin, url = slack
    settings = Settings.load(
        home=home,
        slack_signing_secret=SecretStr(SECRET),
        slack_bot_token=SecretStr(TOKEN),
        slack_api_url=f"{url}/api/",
    )
    changes: list[tuple[str, SlackPost]] = []
    standin.on_change = lambda change, post: changes.append((change, post))
    platform = await Platform.start(settings, inference=inference, embedder=embedder)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(platform), host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:  # noqa: ASYNC110 - uvicorn exposes only a flag
            await asyncio.sleep(0.02)
        yield Served(platform=platform, base_url=f"http://127.0.0.1:{port}", slack=standin, changes=changes)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)
        await platform.aclose()


async def test_a_slack_question_gets_the_support_bots_cited_answer_in_its_thread_once(
    tmp_path: Path, seeded_database: Path, embedder: OnnxMiniLMEmbedder, slack: tuple[SlackStandIn, str]
) -> None:
    shutil.copy(seeded_database, tmp_path / "botfactory.db")
    large = ScriptedModel(
        [call("knowledge"), final("Run the rotation command.", sources=["docs/vault/rotate-api-keys.md"])],
        name="large",
    )
    inference = scripted_inference({"large": large, "small": ScriptedModel([], name="small")})
    async with serve_support(tmp_path, embedder, slack, inference) as served:
        ts = "1700000400.000100"
        question = message_event("<@UBOT> how do I rotate vault keys?", team="T1", channel="C9", ts=ts)
        assert (await served.send(question)).status_code == 200
        post = await served.wait_reply(within=20)
        assert (post.channel, post.thread_ts, post.token) == ("C9", ts, TOKEN)
        assert post.text == "Run the rotation command.\n\nSources: docs/vault/rotate-api-keys.md"
        assert [change for change, _ in served.changes] == ["posted", "updated"]  # "thinking…", then the answer
        assert served.changes[0][1].text == DEFAULT_SLACK_THINKING

        # Slack retries the event and sends the app_mention twin: the same message, no second turn
        retry = await served.send(question, retry_num=1)
        mention = await served.send(
            {**question, "event_id": "Ev2", "event": {**question["event"], "type": "app_mention"}}
        )
        assert (retry.status_code, mention.status_code) == (200, 200)
        await asyncio.sleep(0.5)
        view = await served.platform.runtime.session(f"T1:C9:{ts}")
        assert len(view.turns) == 1 and len(large.requests) == 2
        assert len(served.slack.posts) == 1 and served.slack.calls.count("chat.postMessage") == 1


@pytest.mark.model
@pytest.mark.timeout(900)
async def test_the_real_models_answer_a_slack_question_in_its_thread(
    tmp_path: Path,
    seeded_database: Path,
    embedder: OnnxMiniLMEmbedder,
    models_cache: Path,
    slack: tuple[SlackStandIn, str],
) -> None:
    shutil.copy(seeded_database, tmp_path / "botfactory.db")
    (tmp_path / "models").symlink_to(models_cache, target_is_directory=True)
    async with serve_support(tmp_path, embedder, slack, None) as served:
        ts = "1700000500.000100"
        question = message_event("how do I rotate vault API keys?", channel="C9", ts=ts)
        assert (await served.send(question)).status_code == 200
        post = await served.wait_reply(within=600)
        assert (post.channel, post.thread_ts) == ("C9", ts)
        assert "Sources:" in post.text and "rotate-api-keys.md" in post.text, post.text
        assert [change for change, _ in served.changes] == ["posted", "updated"]
