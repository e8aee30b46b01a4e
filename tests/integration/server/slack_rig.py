"""A platform answering Slack through the app, with a client and a Slack stand-in: the Slack tests' rig.

The ``slack`` and ``rig`` fixtures (this directory's conftest) build it; ``slack_rig`` builds more (other
settings, a second "process" on the same home).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
from pydantic import SecretStr

from botfactory.config import Settings
from botfactory.inference import ModelRequest
from botfactory.memory import OnnxMiniLMEmbedder
from botfactory.server import Platform, create_app
from botfactory.testing import ScriptedModel, SlackStandIn, scripted_inference, signed_event, signed_interaction

SECRET = "test-signing-secret"
TOKEN = "xoxb-test"
ECHO_BOT = """
from botfactory.agents import Agent, Bot

bot = Bot(name="echo", agent=Agent(name="echo", instructions="Repeat the user.", model="small"))
"""


def echo(request: ModelRequest) -> str:
    last = next(m for m in reversed(request.messages) if m.role == "user")
    return f"echo: {last.content}"


@dataclass
class SlackRig:
    platform: Platform
    client: httpx.AsyncClient
    slack: SlackStandIn

    async def send(self, payload: dict[str, object], *, secret: str = SECRET, **options: int) -> httpx.Response:
        body, headers = signed_event(payload, secret, **options)
        return await self.client.post("/slack/events", content=body, headers=headers)

    async def click(self, payload: dict[str, object], *, secret: str = SECRET) -> httpx.Response:
        body, headers = signed_interaction(payload, secret)
        return await self.client.post("/slack/interactions", content=body, headers=headers)

    async def wait_posts(self, count: int, *, within: float = 10.0, text: str | None = None) -> None:
        """Wait for ``count`` posts (the last with ``text``, when given: a placeholder updated in place)."""
        deadline = time.monotonic() + within
        while len(self.slack.posts) < count or (text is not None and self.slack.posts[-1].text != text):
            assert time.monotonic() < deadline, f"posts: {self.slack.posts}, expected {count} ending in {text!r}"
            await asyncio.sleep(0.02)

    async def identified(self, app: str = "default") -> None:
        """Wait until the app's own user is known (``auth.test`` runs in the background at start)."""
        deadline = time.monotonic() + 10
        while self.platform.slack is None or self.platform.slack.identity(app) is None:
            assert time.monotonic() < deadline, "auth.test was never answered"
            await asyncio.sleep(0.02)

    async def sessions(self) -> list[str]:
        return [s.id for s in await self.platform.store.list_sessions()]


@contextlib.asynccontextmanager
async def slack_rig(
    home: Path,
    embedder: OnnxMiniLMEmbedder,
    seeded_database: Path,
    standin: SlackStandIn,
    url: str,
    *,
    latency_s: float = 0.0,
    role: Literal["all", "serve", "worker"] = "all",
    large: ScriptedModel | None = None,
    **settings: Any,
) -> AsyncIterator[SlackRig]:
    """A platform with the echo bot answering Slack (``settings`` override the single app's) and a client.

    Bot files already in ``home / "bots"`` are loaded too; ``large`` is the model behind the ``large`` alias.

    A second rig on the same ``home`` shares the database (another process, as far as the runtime can tell).
    """
    if not (home / "botfactory.db").exists():
        shutil.copy(seeded_database, home / "botfactory.db")
    bots = home / "bots"
    bots.mkdir(exist_ok=True)
    (bots / "echo.py").write_text(ECHO_BOT)
    options: dict[str, Any] = {
        "slack_signing_secret": SecretStr(SECRET),
        "slack_bot_token": SecretStr(TOKEN),
        "slack_bot": "echo",
        "slack_channels": ["C1", "C2"],
        "slack_api_url": f"{url}/api/",
        "slack_thinking_text": "",
    }
    loaded = Settings.load(home=home, bots_dir=bots, **(options | settings))
    small = ScriptedModel([echo], cycle=True, latency_s=latency_s)
    inference = scripted_inference({"small": small, "large": large or ScriptedModel([])})
    platform = await Platform.start(loaded, inference=inference, embedder=embedder, role=role)
    transport = httpx.ASGITransport(app=create_app(platform))
    async with httpx.AsyncClient(transport=transport, base_url="http://botfactory") as client:
        try:
            yield SlackRig(platform=platform, client=client, slack=standin)
        finally:
            await platform.aclose()
