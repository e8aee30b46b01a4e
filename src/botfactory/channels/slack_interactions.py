"""``POST /slack/interactions``: a user clicked a button (``block_actions``); acknowledge and hand it on.

Slack posts interactive payloads as ``application/x-www-form-urlencoded`` with one ``payload`` field holding JSON,
signed like events. Each action goes to the handler registered for its ``action_id`` prefix
(:meth:`SlackInteractions.register`); handlers run inside the request and may only enqueue work, so the answer
(an empty 200) reaches Slack well within its 3 seconds. An action with no handler is acknowledged and logged.

Slack does not retry interactive payloads, but a proxy or a double click can deliver one twice: an action seen
in the last minutes (same ``trigger_id``, ``action_ts`` and ``action_id``) is acknowledged without calling the
handler again, and :attr:`SlackAction.dedup_key` lets a handler's enqueue deduplicate durably across processes.
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from typing import Any, Final
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from botfactory.channels._slack_apps import SignatureError, SlackAction, SlackApp, SlackApps, read_limited_body
from botfactory.errors import BotfactoryError, InvalidInputError
from botfactory.runtime import Runtime

__all__ = ["interactions_route", "parse_actions"]

logger = logging.getLogger(__name__)

_SEEN_FOR_S: Final = 600.0
_SEEN_MAX: Final = 10_000


class _Seen:
    """Actions handled recently, forgotten after ``_SEEN_FOR_S`` or when more than ``_SEEN_MAX`` are kept."""

    def __init__(self) -> None:
        self._seen: OrderedDict[str, float] = OrderedDict()

    def first_time(self, key: str) -> bool:
        now = time.monotonic()
        while self._seen and (len(self._seen) >= _SEEN_MAX or next(iter(self._seen.values())) < now - _SEEN_FOR_S):
            self._seen.popitem(last=False)
        if key in self._seen:
            return False
        self._seen[key] = now
        return True


def _payload(body: bytes) -> dict[str, Any]:
    """The JSON ``payload`` field of the form body.

    Raises:
        InvalidInputError: the body is not a form with a JSON object in ``payload``.
    """
    try:
        form = parse_qs(body.decode(), strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        raise InvalidInputError(
            "the Slack interaction body is not a form (application/x-www-form-urlencoded)"
        ) from None
    values = form.get("payload")
    if not values:
        raise InvalidInputError("the Slack interaction has no 'payload' field")
    try:
        payload = json.loads(values[0])
    except json.JSONDecodeError:
        raise InvalidInputError("the Slack interaction's 'payload' is not JSON") from None
    if not isinstance(payload, dict):
        raise InvalidInputError("the Slack interaction's 'payload' is not a JSON object")
    return payload


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def parse_actions(payload: dict[str, Any], app: SlackApp) -> list[SlackAction]:
    """The actions of a ``block_actions`` payload.

    Raises:
        InvalidInputError: a field Slack always sends (team, user, actions with an ``action_id``) is missing.
    """
    team = _text((payload.get("team") or {}).get("id") if isinstance(payload.get("team"), dict) else None)
    user = _text((payload.get("user") or {}).get("id") if isinstance(payload.get("user"), dict) else None)
    actions = payload.get("actions")
    if team is None or user is None or not isinstance(actions, list) or not actions:
        raise InvalidInputError("the block_actions payload has no team id, user id or actions")
    channel_field = payload.get("channel")
    container = _object(payload.get("container"))
    message = _object(payload.get("message"))
    channel = _text(channel_field.get("id") if isinstance(channel_field, dict) else None) or _text(
        container.get("channel_id")
    )
    message_ts = _text(message.get("ts")) or _text(container.get("message_ts"))
    thread_ts = _text(message.get("thread_ts")) or _text(container.get("thread_ts")) or message_ts
    parsed = []
    for action in actions:
        if not isinstance(action, dict) or _text(action.get("action_id")) is None:
            raise InvalidInputError("a block_actions action has no action_id")
        selected = action.get("selected_option")
        value = _text(action.get("value")) or (_text(selected.get("value")) if isinstance(selected, dict) else None)
        parsed.append(
            SlackAction(
                app=app.name,
                bot=app.bot,
                team=team,
                channel=channel,
                user=user,
                action_id=str(action["action_id"]),
                value=value,
                action_ts=_text(action.get("action_ts")),
                message_ts=message_ts,
                thread_ts=thread_ts,
                response_url=_text(payload.get("response_url")),
                trigger_id=_text(payload.get("trigger_id")),
            )
        )
    return parsed


def interactions_route(runtime: Runtime, apps: SlackApps) -> Route:
    """``POST /slack/interactions`` for every configured Slack app."""
    seen = _Seen()

    async def interactions(request: Request) -> Response:
        body = await read_limited_body(request, runtime.settings.max_request_bytes)
        try:
            hint = _text(_payload(body).get("api_app_id"))
        except InvalidInputError:
            hint = None  # refused below: 401 when unsigned, 400 when signed but malformed
        try:
            app = apps.verify(
                body,
                request.headers.get("x-slack-request-timestamp"),
                request.headers.get("x-slack-signature"),
                api_app_id=hint,
            )
        except SignatureError as exc:
            logger.warning("client=<%s> | Slack interaction refused: %s", request.client, exc.message)
            raise
        payload = _payload(body)
        if payload.get("type") != "block_actions":
            logger.info("app=<%s>, type=<%s> | interaction type not handled", app.name, payload.get("type"))
            return Response(status_code=200)
        for action in parse_actions(payload, app):
            if not seen.first_time(f"{app.name}:{action.dedup_key}:{action.action_ts}"):
                logger.info("app=<%s>, action_id=<%s> | repeated interaction ignored", app.name, action.action_id)
                continue
            handler = apps.interactions.handler(action.action_id)
            if handler is None:
                logger.info("app=<%s>, action_id=<%s> | no handler for this action", app.name, action.action_id)
                continue
            try:
                await handler(action, runtime)
            except BotfactoryError:
                raise
            except Exception:  # a handler's bug must not turn into Slack's "something went wrong" for every click
                logger.exception("app=<%s>, action_id=<%s> | action handler raised", app.name, action.action_id)
        return Response(status_code=200)

    return Route("/slack/interactions", interactions, methods=["POST"])
