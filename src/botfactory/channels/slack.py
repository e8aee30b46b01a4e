"""The Slack channel: signed Events API requests in, one turn per human message, replies in the thread.

``POST /slack/events`` verifies the request's signature, turns a human message into an inbox message and
answers 200 at once: agent work never runs in the request. Slack sends the same message in many shapes (a
retry of an event, ``app_mention`` and ``message`` for one post); all of them carry the message's ``ts``, so the
inbox's dedup key ``slack:{team}:{channel}:{ts}`` makes exactly one turn of them. Edits, deletions, the bot's own
messages and other bots' messages make none. The session is the thread: ``team:channel:thread_ts`` (the
message's own ``ts`` when it starts the thread), and the reply is posted there by :class:`SlackDeliverer` from the
outbox, retried on errors and on 429 after ``Retry-After``. ``POST /slack/interactions`` takes button clicks
(see :mod:`botfactory.channels.slack_interactions`). Several apps can share one deployment (:class:`SlackApps`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from botfactory.channels._slack_apps import (
    DEFAULT_APP,
    SignatureError,
    SlackAction,
    SlackActionHandler,
    SlackApp,
    SlackApps,
    SlackIdentity,
    SlackInteractions,
    read_limited_body,
    verify_slack_signature,
)
from botfactory.channels.slack_delivery import SLACK_CHANNEL, SlackDeliverer
from botfactory.channels.slack_interactions import interactions_route
from botfactory.errors import InvalidInputError, SessionQuarantinedError
from botfactory.runtime import Runtime

__all__ = [
    "DEFAULT_APP",
    "SLACK_CHANNEL",
    "SignatureError",
    "SlackAction",
    "SlackActionHandler",
    "SlackApp",
    "SlackApps",
    "SlackDeliverer",
    "SlackIdentity",
    "SlackInteractions",
    "slack_routes",
    "slack_session_id",
    "verify_slack_signature",
]

logger = logging.getLogger(__name__)

_IGNORED_SUBTYPES: Final = frozenset(
    {"message_changed", "message_deleted", "bot_message", "channel_join", "channel_leave", "message_replied"}
)


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


def _human_message(payload: dict[str, Any], app: SlackApp, own: SlackIdentity | None) -> _Human | None:
    """The human message an event carries, or ``None`` (with the reason logged) when it asks for no turn."""
    event = payload.get("event")
    if not isinstance(event, dict):
        return None
    kind, subtype = event.get("type"), event.get("subtype")
    if kind not in ("message", "app_mention"):
        logger.debug("type=<%s> | event ignored", kind)
        return None
    if app.team_id and payload.get("team_id") and payload.get("team_id") != app.team_id:
        logger.info("app=<%s>, team=<%s> | event from another workspace: no turn", app.name, payload.get("team_id"))
        return None
    if subtype in _IGNORED_SUBTYPES or event.get("bot_id") or event.get("bot_profile"):
        logger.debug("subtype=<%s> | not a human message: no turn", subtype)
        return None
    team = str(payload.get("team_id") or event.get("team") or "")
    channel, ts, user, text = event.get("channel"), event.get("ts"), event.get("user"), event.get("text")
    if not (team and isinstance(channel, str) and isinstance(ts, str) and isinstance(user, str) and text):
        logger.debug("event_id=<%s> | message without channel, ts, user or text: no turn", payload.get("event_id"))
        return None
    if own is not None and user == own.user_id:
        logger.debug("app=<%s> | the app's own message: no turn", app.name)
        return None
    if app.channels and channel not in app.channels:
        logger.info("channel=<%s> | message in a channel the bot is not configured for: no turn", channel)
        return None
    thread_ts = event.get("thread_ts") if isinstance(event.get("thread_ts"), str) else ts
    return _Human(team=team, channel=channel, ts=ts, thread_ts=str(thread_ts), user=user, text=str(text))


def slack_routes(runtime: Runtime, apps: SlackApps) -> list[BaseRoute]:
    """``POST /slack/events`` and ``POST /slack/interactions`` for every configured Slack app."""

    async def events(request: Request) -> Response:
        body = await read_limited_body(request, runtime.settings.max_request_bytes)
        payload = _json_object(body)
        try:
            app = apps.verify(
                body,
                request.headers.get("x-slack-request-timestamp"),
                request.headers.get("x-slack-signature"),
                api_app_id=_app_id(payload),
            )
        except SignatureError as exc:
            logger.warning("client=<%s> | Slack request refused: %s", request.client, exc.message)
            raise
        if payload is None:
            raise InvalidInputError("the Slack request body is not a JSON object")
        if payload.get("type") == "url_verification":
            return PlainTextResponse(str(payload.get("challenge", "")))
        if payload.get("type") != "event_callback":
            return JSONResponse({"ok": True})
        human = _human_message(payload, app, apps.identity(app.name))
        if human is None:
            return JSONResponse({"ok": True})
        session_id = slack_session_id(human.team, human.channel, human.thread_ts)
        try:
            enqueued = await runtime.enqueue(
                app.bot,
                session_id=session_id,
                text=human.text,
                user_id=f"slack:{human.team}:{human.user}",
                dedup_key=f"slack:{human.team}:{human.channel}:{human.ts}",
                channel=SLACK_CHANNEL,
                reply_to={"channel": human.channel, "thread_ts": human.thread_ts, "team": human.team, "app": app.name},
            )
        except SessionQuarantinedError:
            # Acknowledged all the same: an error status only makes Slack send it three more times.
            logger.warning(
                "session_id=<%s>, app=<%s> | Slack message refused: session quarantined", session_id, app.name
            )
            return JSONResponse({"ok": True})
        logger.debug(
            "session_id=<%s>, app=<%s>, duplicate=<%s>, retry=<%s> | Slack message queued",
            enqueued.session_id,
            app.name,
            enqueued.duplicate,
            request.headers.get("x-slack-retry-num"),
        )
        return JSONResponse({"ok": True})

    return [Route("/slack/events", events, methods=["POST"]), interactions_route(runtime, apps)]


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return payload if isinstance(payload, dict) else None


def _app_id(payload: dict[str, Any] | None) -> str | None:
    """The app id an (unverified) payload names: only a hint which secret to try first."""
    value = payload.get("api_app_id") if payload is not None else None
    return value if isinstance(value, str) else None
