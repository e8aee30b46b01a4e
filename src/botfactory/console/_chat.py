"""Chat: talk to any bot from the browser; the page follows the turn's events (sub-agents, model and tool calls).

The message goes through :meth:`Runtime.enqueue` like any channel's; the page then reads the session's events as
server-sent events (``/console/sessions/{id}/events``) until its turn finishes. Without JavaScript the form posts
and the page reloads with the conversation.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any, Final
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from botfactory.console._core import PREFIX, ConsoleState, Viewer, form
from botfactory.errors import BotfactoryError, InvalidInputError, SessionNotFoundError
from botfactory.identity import Principal
from botfactory.runtime import SessionView

__all__ = ["chat_routes", "chat_user"]

logger = logging.getLogger(__name__)

_MAX_ID: Final = 256


def chat_user(principal: Principal) -> str:
    """Who a console chat message is from: the OpenID Connect user, else ``console:<key id>`` or ``console:local``."""
    if principal.user_id is not None:
        return principal.user_id
    if principal.kind == "api_key":
        return f"console:{principal.key_id}"
    return "console:local"


def _conversation(view: SessionView) -> list[dict[str, Any]]:
    """The session as chat bubbles: each message, and each turn's reply after the messages it answered."""
    replies = {t.id: t for t in view.turns}
    turn_of = {i.message_id: i.turn_id for i in view.inbox}
    bubbles: list[dict[str, Any]] = []
    answered: set[str] = set()
    for message in view.messages:
        if message.role != "user":
            continue
        bubbles.append({"role": "user", "text": message.text})
        turn_id = turn_of.get(message.id)
        later = [m for m in view.messages if m.role == "user" and turn_of.get(m.id) == turn_id and m.seq > message.seq]
        if turn_id is None or turn_id in answered or later:
            continue
        turn = replies.get(turn_id)
        if turn is not None and turn.status != "running":
            answered.add(turn_id)
            bubbles.append({"role": "bot", "text": turn.reply or "", "status": turn.status, "turn_id": turn.id})
    return bubbles


def chat_routes(state: ConsoleState) -> list[BaseRoute]:
    """The chat pages' routes."""
    runtime = state.runtime

    async def index(request: Request, viewer: Viewer) -> Response:
        bots = [b for b in runtime.bots if viewer.allows(b.name)]
        return state.render("chat_index.html", viewer=viewer, page="chat", bots=bots)

    async def chat(request: Request, viewer: Viewer) -> Response:
        bot = runtime.bots.get(request.path_params["bot"])
        viewer.principal.check_bot(bot.name)
        session_id = request.query_params.get("session") or f"console-{secrets.token_hex(6)}"
        if not (0 < len(session_id) <= _MAX_ID and session_id.isprintable()):
            raise InvalidInputError(f"a session id is 1 to {_MAX_ID} printable characters")
        bubbles: list[dict[str, Any]] = []
        try:
            view = await runtime.session(session_id)
        except SessionNotFoundError:
            view = None
        if view is not None:
            if view.session.bot != bot.name:
                raise InvalidInputError(f"session {session_id!r} belongs to another bot; start a new chat")
            bubbles = _conversation(view)
        return state.render(
            "chat.html",
            viewer=viewer,
            page="chat",
            bot=bot,
            bots=[b.name for b in runtime.bots if viewer.allows(b.name)],
            session_id=session_id,
            bubbles=bubbles,
            existing=view is not None,
        )

    async def send(request: Request, viewer: Viewer) -> Response:
        wants_json = "application/json" in request.headers.get("accept", "")
        try:
            bot = runtime.bots.get(request.path_params["bot"])
            viewer.principal.check_bot(bot.name)
            fields = await form(request)
            session_id = fields.get("session_id", "")
            text = fields.get("text", "")
            runtime.check_input(session_id=session_id, text=text, user_id=None)
            after = await runtime.queue.last_event_id(session_id)
            enqueued = await runtime.enqueue(
                bot.name,
                session_id=session_id,
                text=text,
                user_id=chat_user(viewer.principal),
                user_groups=viewer.principal.groups,
            )
        except BotfactoryError as exc:
            if not wants_json:
                raise
            return JSONResponse({"error": exc.to_dict()}, status_code=exc.http_status)
        logger.debug("session_id=<%s>, bot=<%s> | console chat message queued", session_id, bot.name)
        if wants_json:
            return JSONResponse(
                {
                    "session_id": enqueued.session_id,
                    "message_id": enqueued.message_id,
                    "after": after,
                    "events": f"{PREFIX}/sessions/{quote(enqueued.session_id, safe='')}/events?after={after}",
                },
                status_code=202,
            )
        return RedirectResponse(
            f"{PREFIX}/chat/{bot.name}?session={quote(enqueued.session_id, safe='')}", status_code=303
        )

    return [
        Route(f"{PREFIX}/chat", state.guard(index), methods=["GET"]),
        Route(PREFIX + "/chat/{bot}", state.guard(chat), methods=["GET"]),
        Route(PREFIX + "/chat/{bot}", state.guard(send), methods=["POST"]),
    ]
