"""The Slack channel: signed Events API requests in, one turn per human message, replies in the thread.

``POST /slack/events`` verifies the request's signature, turns a human message into an inbox message and
answers 200 at once: agent work never runs in the request. Slack sends the same message in many shapes (a
retry of an event, ``app_mention`` and ``message`` for one post); all of them carry the message's ``ts``, so the
inbox's dedup key ``slack:{team}:{channel}:{ts}`` makes exactly one turn of them. Edits, deletions, the bot's own
messages and other bots' messages make none. The session is the thread: ``team:channel:thread_ts`` (the
message's own ``ts`` when it starts the thread), and the reply is posted there by :class:`SlackDeliverer` from the
outbox, retried on errors and on 429 after ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from botfactory.errors import BotfactoryError, InvalidInputError, MissingExtraError, PayloadTooLargeError
from botfactory.runtime import DeliveryError, Runtime
from botfactory.store import OutboxRecord

__all__ = [
    "SLACK_CHANNEL",
    "SignatureError",
    "SlackApp",
    "SlackDeliverer",
    "slack_routes",
    "slack_session_id",
    "verify_slack_signature",
]

logger = logging.getLogger(__name__)

SLACK_CHANNEL: Final = "slack"
"""The outbox channel of Slack replies."""
MAX_SKEW_S: Final = 300
"""Requests signed longer ago (or further ahead) than this are refused: a captured request cannot be replayed."""
_IGNORED_SUBTYPES: Final = frozenset(
    {"message_changed", "message_deleted", "bot_message", "channel_join", "channel_leave", "message_replied"}
)


class SignatureError(BotfactoryError):
    """A Slack request's signature is missing, stale or wrong."""

    code = "invalid_signature"
    http_status = 401


@dataclass(frozen=True, kw_only=True)
class SlackApp:
    """One Slack app: how its requests are verified, where its messages go, and how replies are posted.

    Attributes:
        signing_secret: The app's signing secret (verifies every request).
        bot_token: The app's ``xoxb-`` token, used only to post replies.
        bot: The botfactory bot that answers.
        channels: Slack channel ids the bot answers in; empty for every channel it is in.
        api_url: Slack Web API root (a local stand-in in tests and demos).
    """

    signing_secret: str
    bot_token: str
    bot: str = "support"
    channels: frozenset[str] = frozenset()
    api_url: str = "https://slack.com/api/"


def verify_slack_signature(
    secret: str, body: bytes, timestamp: str | None, signature: str | None, *, now: float | None = None
) -> None:
    """Check Slack's ``v0`` signature: HMAC-SHA256 over ``v0:{timestamp}:{body}``, compared in constant time.

    Raises:
        SignatureError: a header is missing, the timestamp is more than 5 minutes away, or the signature is wrong.
    """
    if not timestamp or not signature:
        raise SignatureError("the request has no X-Slack-Request-Timestamp or X-Slack-Signature header")
    try:
        sent = int(timestamp)
    except ValueError:
        raise SignatureError("X-Slack-Request-Timestamp is not a number") from None
    current = time.time() if now is None else now
    if abs(current - sent) > MAX_SKEW_S:
        raise SignatureError(
            f"the request was signed {int(current - sent)} s from now, beyond {MAX_SKEW_S} s (replayed or a clock off)"
        )
    expected = "v0=" + hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise SignatureError("the X-Slack-Signature does not match the body and the signing secret")


def slack_session_id(team: str, channel: str, thread_ts: str) -> str:
    """The session of a Slack thread."""
    return f"{team}:{channel}:{thread_ts}"


@dataclass(frozen=True, kw_only=True)
class _Human:
    team: str
    channel: str
    ts: str
    thread_ts: str
    user: str
    text: str


def _human_message(payload: dict[str, Any], app: SlackApp, own_user: str | None) -> _Human | None:
    """The human message an event carries, or ``None`` (with the reason logged) when it asks for no turn."""
    event = payload.get("event")
    if not isinstance(event, dict):
        return None
    kind, subtype = event.get("type"), event.get("subtype")
    if kind not in ("message", "app_mention"):
        logger.debug("type=<%s> | event ignored", kind)
        return None
    if subtype in _IGNORED_SUBTYPES or event.get("bot_id") or event.get("bot_profile"):
        logger.debug("subtype=<%s> | not a human message: no turn", subtype)
        return None
    team = str(payload.get("team_id") or event.get("team") or "")
    channel, ts, user, text = event.get("channel"), event.get("ts"), event.get("user"), event.get("text")
    if not (team and isinstance(channel, str) and isinstance(ts, str) and isinstance(user, str) and text):
        logger.debug("event_id=<%s> | message without channel, ts, user or text: no turn", payload.get("event_id"))
        return None
    if own_user is not None and user == own_user:
        return None
    if app.channels and channel not in app.channels:
        logger.info("channel=<%s> | message in a channel the bot is not configured for: no turn", channel)
        return None
    thread_ts = event.get("thread_ts") if isinstance(event.get("thread_ts"), str) else ts
    return _Human(team=team, channel=channel, ts=ts, thread_ts=str(thread_ts), user=user, text=str(text))


def slack_routes(
    runtime: Runtime, app: SlackApp, *, own_user: Callable[[], str | None] = lambda: None
) -> list[BaseRoute]:
    """``POST /slack/events`` for one Slack app."""

    async def events(request: Request) -> Response:
        limit = runtime.settings.max_request_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLargeError(f"the request body has {declared} bytes, over the limit of {limit}")
        body = await request.body()
        if len(body) > limit:
            raise PayloadTooLargeError(f"the request body is over the limit of {limit} bytes")
        try:
            verify_slack_signature(
                app.signing_secret,
                body,
                request.headers.get("x-slack-request-timestamp"),
                request.headers.get("x-slack-signature"),
            )
        except SignatureError as exc:
            logger.warning("client=<%s> | Slack request refused: %s", request.client, exc.message)
            raise
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise InvalidInputError("the Slack request body is not JSON") from None
        if not isinstance(payload, dict):
            raise InvalidInputError("the Slack request body is not a JSON object")
        if payload.get("type") == "url_verification":
            return PlainTextResponse(str(payload.get("challenge", "")))
        if payload.get("type") != "event_callback":
            return JSONResponse({"ok": True})
        human = _human_message(payload, app, own_user())
        if human is None:
            return JSONResponse({"ok": True})
        enqueued = await runtime.enqueue(
            app.bot,
            session_id=slack_session_id(human.team, human.channel, human.thread_ts),
            text=human.text,
            user_id=f"slack:{human.team}:{human.user}",
            dedup_key=f"slack:{human.team}:{human.channel}:{human.ts}",
            channel=SLACK_CHANNEL,
            reply_to={"channel": human.channel, "thread_ts": human.thread_ts, "team": human.team},
        )
        logger.debug(
            "session_id=<%s>, duplicate=<%s>, retry=<%s> | Slack message queued",
            enqueued.session_id,
            enqueued.duplicate,
            request.headers.get("x-slack-retry-num"),
        )
        return JSONResponse({"ok": True})

    return [Route("/slack/events", events, methods=["POST"])]


class SlackDeliverer:
    """Posts replies to their thread with ``slack_sdk``'s ``WebClient`` (run on a thread: it is synchronous)."""

    def __init__(self, app: SlackApp) -> None:
        try:
            from slack_sdk import WebClient
        except ModuleNotFoundError:
            raise MissingExtraError("slack", "the Slack channel") from None
        self._client = WebClient(token=app.bot_token, base_url=app.api_url)

    async def deliver(self, reply: OutboxRecord) -> None:
        """Post ``reply`` in its thread.

        Raises:
            DeliveryError: Slack refused or could not be reached; ``retry_after_s`` is set on a 429.
        """
        from slack_sdk.errors import SlackApiError, SlackRequestError

        target = reply.reply_to or {}
        if not target.get("channel"):
            raise DeliveryError(f"reply {reply.id} has no Slack channel to go to", permanent=True)
        try:
            await asyncio.to_thread(
                self._client.chat_postMessage,
                channel=str(target["channel"]),
                thread_ts=target.get("thread_ts"),
                text=reply.text,
            )
        except SlackApiError as exc:
            status = exc.response.status_code
            retry_after = exc.response.headers.get("Retry-After") or exc.response.headers.get("retry-after")
            error = exc.response.get("error") if isinstance(exc.response.data, dict) else None
            if status == 429:
                raise DeliveryError(
                    "Slack rate-limited the reply", retry_after_s=float(retry_after) if retry_after else None
                ) from None
            permanent = error in ("channel_not_found", "not_in_channel", "invalid_auth", "account_inactive")
            raise DeliveryError(f"Slack refused the reply: {error or status}", permanent=permanent) from None
        except (SlackRequestError, OSError) as exc:
            raise DeliveryError(f"Slack could not be reached: {exc}") from None
