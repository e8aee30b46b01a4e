"""A local Slack for demos and tests: the Web API calls botfactory makes, and correctly signed events.

``SlackStandIn`` serves ``auth.test``, ``chat.postMessage`` and ``chat.update`` under ``/api/`` and records every
post; point ``slack_api_url`` at ``{base_url}/api/``. ``signed_event`` builds an Events API request the way Slack
signs it, for a running botfactory's ``POST /slack/events``.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["SlackPost", "SlackStandIn", "message_event", "signed_event"]


@dataclass(frozen=True, kw_only=True)
class SlackPost:
    """One message the stand-in accepted."""

    channel: str
    text: str
    thread_ts: str | None
    ts: str


@dataclass
class SlackStandIn:
    """A Slack workspace's Web API, in memory.

    Args:
        token: The bot token requests must carry.
        bot_user_id: Returned by ``auth.test``.
        team_id: Returned by ``auth.test``.

    Attributes:
        posts: Messages posted, oldest first (updates replace the text of the post they name).
        rate_limit: The next this many calls are answered 429 with ``Retry-After: retry_after_s``.
        app: The ASGI application.
    """

    token: str = "xoxb-demo"
    bot_user_id: str = "UBOT"
    team_id: str = "T1"
    posts: list[SlackPost] = field(default_factory=list)
    rate_limit: int = 0
    retry_after_s: int = 1
    limited: int = 0
    _ts: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self.app = Starlette(
            routes=[
                Route("/api/auth.test", self._auth_test, methods=["POST", "GET"]),
                Route("/api/chat.postMessage", self._post, methods=["POST"]),
                Route("/api/chat.update", self._update, methods=["POST"]),
            ]
        )

    async def _arguments(self, request: Request) -> dict[str, Any] | Response:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse({"ok": False, "error": "invalid_auth"})
        if self.rate_limit > 0:
            self.rate_limit -= 1
            self.limited += 1
            return JSONResponse(
                {"ok": False, "error": "ratelimited"},
                status_code=429,
                headers={"Retry-After": str(self.retry_after_s)},
            )
        if request.headers.get("content-type", "").startswith("application/json"):
            data = json.loads(await request.body() or b"{}")
            return data if isinstance(data, dict) else {}
        return dict(await request.form())

    async def _auth_test(self, request: Request) -> Response:
        arguments = await self._arguments(request)
        if isinstance(arguments, Response):
            return arguments
        return JSONResponse({"ok": True, "user_id": self.bot_user_id, "team_id": self.team_id, "bot_id": "B1"})

    async def _post(self, request: Request) -> Response:
        arguments = await self._arguments(request)
        if isinstance(arguments, Response):
            return arguments
        channel, text = arguments.get("channel"), arguments.get("text")
        if not channel or not text:
            return JSONResponse({"ok": False, "error": "no_text" if channel else "channel_not_found"})
        post = SlackPost(
            channel=str(channel),
            text=str(text),
            thread_ts=str(arguments["thread_ts"]) if arguments.get("thread_ts") else None,
            ts=f"{2_000_000_000 + next(self._ts)}.000100",
        )
        self.posts.append(post)
        return JSONResponse({"ok": True, "channel": post.channel, "ts": post.ts})

    async def _update(self, request: Request) -> Response:
        arguments = await self._arguments(request)
        if isinstance(arguments, Response):
            return arguments
        for index, post in enumerate(self.posts):
            if post.ts == arguments.get("ts") and post.channel == arguments.get("channel"):
                self.posts[index] = SlackPost(
                    channel=post.channel, text=str(arguments.get("text", "")), thread_ts=post.thread_ts, ts=post.ts
                )
                return JSONResponse({"ok": True, "channel": post.channel, "ts": post.ts})
        return JSONResponse({"ok": False, "error": "message_not_found"})


def message_event(
    text: str,
    *,
    team: str = "T1",
    channel: str = "C1",
    user: str = "U1",
    ts: str = "1700000000.000100",
    thread_ts: str | None = None,
    event_id: str = "Ev1",
    kind: str = "message",
    **extra: Any,
) -> dict[str, Any]:
    """An Events API ``event_callback`` payload for one message."""
    event: dict[str, Any] = {"type": kind, "channel": channel, "user": user, "text": text, "ts": ts, **extra}
    if thread_ts is not None:
        event["thread_ts"] = thread_ts
    return {
        "type": "event_callback",
        "team_id": team,
        "event_id": event_id,
        "event_time": int(time.time()),
        "event": event,
    }


def signed_event(
    payload: dict[str, Any], secret: str, *, timestamp: int | None = None, retry_num: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of an Events API request, signed as Slack signs it (``v0``, HMAC-SHA256)."""
    body = json.dumps(payload).encode()
    sent = str(int(time.time()) if timestamp is None else timestamp)
    signature = "v0=" + hmac.new(secret.encode(), b"v0:" + sent.encode() + b":" + body, hashlib.sha256).hexdigest()
    headers = {
        "content-type": "application/json",
        "x-slack-request-timestamp": sent,
        "x-slack-signature": signature,
    }
    if retry_num is not None:
        headers["x-slack-retry-num"] = str(retry_num)
        headers["x-slack-retry-reason"] = "http_timeout"
    return body, headers
