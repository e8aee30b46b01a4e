"""A local Slack for demos and tests: the Web API calls botfactory makes, and correctly signed events.

``SlackStandIn`` serves ``auth.test``, ``chat.postMessage``, ``chat.update``, ``chat.delete`` and
``chat.postEphemeral`` under ``/api/`` and records every post with the token it came with; point ``slack_api_url`` at
``{base_url}/api/``.
``signed_event`` builds an Events API request the way Slack signs it, for a running botfactory's
``POST /slack/events``; ``signed_interaction`` does the same for a button click (``POST /slack/interactions``).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = [
    "SlackPost",
    "SlackStandIn",
    "action_payload",
    "message_event",
    "sign",
    "signed_event",
    "signed_interaction",
]

PostChange = Literal["posted", "updated", "deleted"]


@dataclass(frozen=True, kw_only=True)
class SlackPost:
    """One message the stand-in accepted."""

    channel: str
    text: str
    thread_ts: str | None
    ts: str
    token: str = ""
    """The bot token the post was made with (which app posted it)."""
    blocks: list[dict[str, Any]] | None = None
    """Block Kit blocks sent with the message (buttons, sections), as Slack received them."""
    user: str | None = None
    """For an ephemeral message (``chat.postEphemeral``): the only user who sees it."""


@dataclass
class SlackStandIn:
    """A Slack workspace's Web API, in memory.

    Args:
        token: The bot token requests must carry.
        bot_user_id: Returned by ``auth.test``.
        team_id: Returned by ``auth.test``.
        tokens: More accepted bot tokens (several apps posting to one workspace).
        on_change: Called with each post made, updated or deleted (``botfactory slack standin`` prints them).

    Attributes:
        posts: Messages posted, oldest first (updates replace the text of the post they name; deletes remove it).
        rate_limit: The next this many calls are answered 429 with ``Retry-After: retry_after_s``.
        calls: Web API methods called, in order (``chat.postMessage``, ``chat.update``, ...), 429s included.
        ephemeral: Messages posted with ``chat.postEphemeral`` (seen by one user only), oldest first.
        app: The ASGI application.
    """

    token: str = "xoxb-demo"
    bot_user_id: str = "UBOT"
    team_id: str = "T1"
    tokens: tuple[str, ...] = ()
    on_change: Callable[[PostChange, SlackPost], None] | None = None
    posts: list[SlackPost] = field(default_factory=list)
    rate_limit: int = 0
    retry_after_s: int = 1
    limited: int = 0
    calls: list[str] = field(default_factory=list)
    ephemeral: list[SlackPost] = field(default_factory=list)
    _ts: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self.app = Starlette(
            routes=[
                Route("/api/auth.test", self._auth_test, methods=["POST", "GET"]),
                Route("/api/chat.postMessage", self._post, methods=["POST"]),
                Route("/api/chat.update", self._update, methods=["POST"]),
                Route("/api/chat.delete", self._delete, methods=["POST"]),
                Route("/api/chat.postEphemeral", self._post_ephemeral, methods=["POST"]),
            ]
        )

    def _changed(self, change: PostChange, post: SlackPost) -> None:
        if self.on_change is not None:
            self.on_change(change, post)

    async def _arguments(self, request: Request) -> dict[str, Any] | Response:
        self.calls.append(request.url.path.rsplit("/", 1)[-1])
        authorization = request.headers.get("authorization", "")
        token = authorization.removeprefix("Bearer ")
        if not authorization.startswith("Bearer ") or token not in (self.token, *self.tokens):
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
            arguments = data if isinstance(data, dict) else {}
        else:
            arguments = dict(await request.form())
        # Like Slack, arguments may come in the query string too (slack_sdk's async client sends some there).
        return {**dict(request.query_params), **arguments, "_token": token}

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
            token=str(arguments["_token"]),
            blocks=_blocks(arguments.get("blocks")),
        )
        self.posts.append(post)
        self._changed("posted", post)
        return JSONResponse({"ok": True, "channel": post.channel, "ts": post.ts})

    async def _update(self, request: Request) -> Response:
        arguments = await self._arguments(request)
        if isinstance(arguments, Response):
            return arguments
        for index, post in enumerate(self.posts):
            if post.ts == arguments.get("ts") and post.channel == arguments.get("channel"):
                self.posts[index] = SlackPost(
                    channel=post.channel,
                    text=str(arguments.get("text", "")),
                    thread_ts=post.thread_ts,
                    ts=post.ts,
                    token=str(arguments["_token"]),
                    blocks=_blocks(arguments.get("blocks")),
                )
                self._changed("updated", self.posts[index])
                return JSONResponse({"ok": True, "channel": post.channel, "ts": post.ts})
        return JSONResponse({"ok": False, "error": "message_not_found"})

    async def _delete(self, request: Request) -> Response:
        arguments = await self._arguments(request)
        if isinstance(arguments, Response):
            return arguments
        for index, post in enumerate(self.posts):
            if post.ts == arguments.get("ts") and post.channel == arguments.get("channel"):
                del self.posts[index]
                self._changed("deleted", post)
                return JSONResponse({"ok": True, "channel": post.channel, "ts": post.ts})
        return JSONResponse({"ok": False, "error": "message_not_found"})

    async def _post_ephemeral(self, request: Request) -> Response:
        arguments = await self._arguments(request)
        if isinstance(arguments, Response):
            return arguments
        channel, text, user = arguments.get("channel"), arguments.get("text"), arguments.get("user")
        if not channel or not text or not user:
            return JSONResponse({"ok": False, "error": "user_not_in_channel" if channel and text else "no_text"})
        post = SlackPost(
            channel=str(channel),
            text=str(text),
            thread_ts=str(arguments["thread_ts"]) if arguments.get("thread_ts") else None,
            ts=f"{2_000_000_000 + next(self._ts)}.000200",
            token=str(arguments["_token"]),
            user=str(user),
        )
        self.ephemeral.append(post)
        return JSONResponse({"ok": True, "message_ts": post.ts})


def _blocks(value: Any) -> list[dict[str, Any]] | None:
    """Blocks as sent: a JSON array in a JSON body, or JSON text in a form."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None
    return [b for b in value if isinstance(b, dict)] if isinstance(value, list) else None


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
    api_app_id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """An Events API ``event_callback`` payload for one message (``extra`` goes into the event)."""
    event: dict[str, Any] = {"type": kind, "channel": channel, "user": user, "text": text, "ts": ts, **extra}
    if thread_ts is not None:
        event["thread_ts"] = thread_ts
    payload: dict[str, Any] = {
        "type": "event_callback",
        "team_id": team,
        "event_id": event_id,
        "event_time": int(time.time()),
        "event": event,
    }
    if api_app_id is not None:
        payload["api_app_id"] = api_app_id
    return payload


def action_payload(
    action_id: str,
    *,
    value: str | None = None,
    team: str = "T1",
    channel: str = "C1",
    user: str = "U1",
    message_ts: str = "1700000000.000100",
    thread_ts: str | None = None,
    trigger_id: str = "1.2.abc",
    action_ts: str = "1700000001.000200",
    api_app_id: str | None = None,
) -> dict[str, Any]:
    """A ``block_actions`` interactive payload: ``user`` clicked the button ``action_id`` on a message."""
    message: dict[str, Any] = {"type": "message", "ts": message_ts, "text": "Approve?"}
    if thread_ts is not None:
        message["thread_ts"] = thread_ts
    action: dict[str, Any] = {"type": "button", "action_id": action_id, "block_id": "b1", "action_ts": action_ts}
    if value is not None:
        action["value"] = value
    payload: dict[str, Any] = {
        "type": "block_actions",
        "team": {"id": team, "domain": "example"},
        "user": {"id": user, "username": "someone", "team_id": team},
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": False},
        "trigger_id": trigger_id,
        "channel": {"id": channel, "name": "general"},
        "message": message,
        "response_url": f"https://hooks.slack.com/actions/{team}/1/xyz",
        "actions": [action],
    }
    if api_app_id is not None:
        payload["api_app_id"] = api_app_id
    return payload


def sign(body: bytes, secret: str, *, timestamp: int | None = None) -> dict[str, str]:
    """The ``X-Slack-Request-Timestamp`` and ``X-Slack-Signature`` headers Slack sends with ``body``."""
    sent = str(int(time.time()) if timestamp is None else timestamp)
    signature = "v0=" + hmac.new(secret.encode(), b"v0:" + sent.encode() + b":" + body, hashlib.sha256).hexdigest()
    return {"x-slack-request-timestamp": sent, "x-slack-signature": signature}


def signed_interaction(
    payload: dict[str, Any], secret: str, *, timestamp: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of an interactive request (a form with a JSON ``payload``), signed as Slack signs it."""
    body = urlencode({"payload": json.dumps(payload)}).encode()
    return body, {"content-type": "application/x-www-form-urlencoded", **sign(body, secret, timestamp=timestamp)}


def signed_event(
    payload: dict[str, Any], secret: str, *, timestamp: int | None = None, retry_num: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of an Events API request, signed as Slack signs it (``v0``, HMAC-SHA256)."""
    body = json.dumps(payload).encode()
    headers = {"content-type": "application/json", **sign(body, secret, timestamp=timestamp)}
    if retry_num is not None:
        headers["x-slack-retry-num"] = str(retry_num)
        headers["x-slack-retry-reason"] = "http_timeout"
    return body, headers
