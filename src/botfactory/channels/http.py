"""The HTTP channel: send messages to a bot's sessions, follow and cancel them, or invoke and wait for the reply.

``POST /v1/bots/{bot}/sessions/{id}/messages`` only queues the message (202): any worker answers it, and the
caller follows the session (``GET /v1/sessions/{id}``, or its events as server-sent events). ``invoke`` queues
and waits, as JSON or as a stream of events.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from typing import Any, Final, TypeVar
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from botfactory.channels._access import acting_user, caller_groups, check_bot_allowed, check_session_visible, key_bot
from botfactory.channels._streaming import invoke_with_events
from botfactory.errors import BotfactoryError, InvalidInputError, PayloadTooLargeError
from botfactory.runtime import InvokeResult, Runtime
from botfactory.store import EventRecord

__all__ = ["KEEPALIVE_S", "InvokeBody", "MessageBody", "http_routes", "read_json"]

logger = logging.getLogger(__name__)

KEEPALIVE_S: Final = 15.0
"""An event stream with nothing to say sends a ``: ping`` comment this often, so proxies keep it open."""
_CURSOR: Final = re.compile(r"^[0-9]{1,18}$")
_MAX_KEY_CHARS: Final = 256
_MAX_LIST: Final = 1000
_Body = TypeVar("_Body", bound=BaseModel)


class InvokeBody(BaseModel):
    """Body of ``POST /v1/bots/{bot}/invoke``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    session_id: str = Field(min_length=1, max_length=256)
    text: str
    user_id: str | None = Field(default=None, min_length=1, max_length=256)


class MessageBody(BaseModel):
    """Body of ``POST /v1/bots/{bot}/sessions/{session_id}/messages``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    text: str
    user_id: str | None = Field(default=None, min_length=1, max_length=256)
    dedup_key: str | None = Field(default=None, min_length=1, max_length=256)


async def read_json(request: Request, *, max_bytes: int) -> Any:
    """The request body as JSON, refusing bodies over ``max_bytes`` before reading them whole.

    Raises:
        PayloadTooLargeError, InvalidInputError
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLargeError(f"the request body has {declared} bytes, over the limit of {max_bytes}")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > max_bytes:
            raise PayloadTooLargeError(f"the request body is over the limit of {max_bytes} bytes")
    if not body:
        raise InvalidInputError("the request body is empty; send a JSON object")
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"the request body is not valid JSON ({exc})") from None


def _parse(model: type[_Body], data: Any, example: str) -> _Body:
    if not isinstance(data, dict):
        raise InvalidInputError(f"the request body must be a JSON object like {example}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors())
        raise InvalidInputError(f"invalid request body ({problems})") from None


def _parse_invoke(data: Any) -> InvokeBody:
    return _parse(InvokeBody, data, '{"session_id": "...", "text": "..."}')


def _session_id(request: Request) -> str:
    """The ``{session_id}`` of the path, checked like a session id in a body."""
    session_id: str = request.path_params["session_id"]
    if not (0 < len(session_id) <= _MAX_KEY_CHARS and session_id.isprintable()):
        raise InvalidInputError(f"session_id must be 1 to {_MAX_KEY_CHARS} printable characters")
    return session_id


def _event_cursor(request: Request) -> int:
    """Where an event stream resumes: the ``Last-Event-ID`` header (a reconnecting client), else ``?after=``."""
    header = request.headers.get("last-event-id")
    if header:  # a reconnecting EventSource repeats the original URL and adds this header
        return _cursor(header, "the Last-Event-ID header")
    after = request.query_params.get("after")
    return 0 if after is None else _cursor(after, "after")


def _cursor(value: str, name: str) -> int:
    if not _CURSOR.match(value):
        raise InvalidInputError(f"{name} must be an event id (a whole number, 0 or more), not {value[:40]!r}")
    return int(value)


def _flag(request: Request, name: str, *, default: bool) -> bool:
    value = request.query_params.get(name)
    if value is None:
        return default
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise InvalidInputError(f"{name} must be true or false, not {value[:40]!r}")


def _limit(request: Request) -> int:
    value = request.query_params.get("limit", "100")
    if not _CURSOR.match(value) or not 1 <= int(value) <= _MAX_LIST:
        raise InvalidInputError(f"limit must be a whole number from 1 to {_MAX_LIST}, not {value[:40]!r}")
    return int(value)


def _result_json(result: InvokeResult) -> dict[str, Any]:
    return {
        "session_id": result.session_id,
        "turn_id": result.turn_id,
        "status": result.status,
        "reply": result.reply,
        "error_code": result.error_code,
    }


def http_routes(runtime: Runtime) -> list[BaseRoute]:
    """The HTTP channel's routes, bound to a runtime."""

    async def list_bots(request: Request) -> Response:
        return JSONResponse({"bots": [{"name": b.name, "description": b.description} for b in runtime.bots]})

    async def invoke(request: Request) -> Response:
        bot = request.path_params["bot"]
        runtime.bots.get(bot)
        body = _parse_invoke(await read_json(request, max_bytes=runtime.settings.max_request_bytes))
        body = body.model_copy(update={"user_id": acting_user(request, body.user_id)})
        runtime.check_input(session_id=body.session_id, text=body.text, user_id=body.user_id)
        wants_stream = request.query_params.get("stream") in (
            "1",
            "true",
        ) or "text/event-stream" in request.headers.get("accept", "")
        if not wants_stream:
            result = await runtime.invoke(
                bot,
                session_id=body.session_id,
                text=body.text,
                user_id=body.user_id,
                user_groups=caller_groups(request),
            )
            return JSONResponse(_result_json(result))
        return StreamingResponse(_stream(runtime, bot, body), media_type="text/event-stream")

    async def post_message(request: Request) -> Response:
        bot = request.path_params["bot"]
        runtime.bots.get(bot)
        session_id = _session_id(request)
        body = _parse(
            MessageBody, await read_json(request, max_bytes=runtime.settings.max_request_bytes), '{"text": "..."}'
        )
        enqueued = await runtime.enqueue(
            bot,
            session_id=session_id,
            text=body.text,
            user_id=acting_user(request, body.user_id),
            dedup_key=body.dedup_key,
            user_groups=caller_groups(request),
        )
        return JSONResponse(
            {
                "message_id": enqueued.message_id,
                "session_id": enqueued.session_id,
                "seq": enqueued.seq,
                "duplicate": enqueued.duplicate,
            },
            status_code=202,
            headers={"location": f"/v1/sessions/{quote(enqueued.session_id, safe='')}"},
        )

    async def list_sessions(request: Request) -> Response:
        active = _flag(request, "active", default=False)
        limit = _limit(request)
        bot = request.query_params.get("bot") or key_bot(request)
        if bot is not None:
            check_bot_allowed(request, bot)
        found = await runtime.list_sessions(active=active, bot=bot, limit=limit)
        return JSONResponse({"sessions": [runtime.summary_to_dict(summary) for summary in found]})

    async def get_session(request: Request) -> Response:
        session_id = _session_id(request)
        view = await runtime.session(session_id)
        check_session_visible(request, session_id, view.session.bot)
        return JSONResponse(view.to_dict())

    async def session_events(request: Request) -> Response:
        session_id = _session_id(request)
        after = _event_cursor(request)
        follow = _flag(request, "follow", default=True)
        session = await runtime.store.get_session(session_id)  # 404 now, not in the middle of a stream
        check_session_visible(request, session_id, session.bot)
        return StreamingResponse(
            _event_stream(runtime, session_id, after=after, follow=follow),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )

    async def cancel_session(request: Request) -> Response:
        session_id = _session_id(request)
        if key_bot(request) is not None:
            check_session_visible(request, session_id, (await runtime.store.get_session(session_id)).bot)
        result = await runtime.cancel(session_id)
        return JSONResponse(
            {
                "session_id": result.session_id,
                "turn_id": result.turn_id,
                "running": result.running,
                "cancelled_messages": result.cancelled_messages,
            },
            status_code=202 if result.running else 200,
        )

    return [
        Route("/v1/bots", list_bots, methods=["GET"]),
        Route("/v1/bots/{bot}/invoke", invoke, methods=["POST"]),
        Route("/v1/bots/{bot}/sessions/{session_id}/messages", post_message, methods=["POST"]),
        Route("/v1/sessions", list_sessions, methods=["GET"]),
        Route("/v1/sessions/{session_id}", get_session, methods=["GET"]),
        Route("/v1/sessions/{session_id}/events", session_events, methods=["GET"]),
        Route("/v1/sessions/{session_id}/cancel", cancel_session, methods=["POST"]),
    ]


async def _event_stream(runtime: Runtime, session_id: str, *, after: int, follow: bool) -> AsyncIterator[str]:
    """The session's stored events as server-sent events, then (``follow``) new ones, with keep-alives."""
    try:
        async for event in runtime.watch(session_id, after=after, follow=follow, tick_s=KEEPALIVE_S):
            yield ": ping\n\n" if event is None else _sse_record(event)
    except BotfactoryError as exc:
        yield _sse("error", exc.to_dict())


def _sse_record(event: EventRecord) -> str:
    data = {"type": event.type, "turn_id": event.turn_id, "created_at": event.created_at, **event.data}
    return f"id: {event.id}\nevent: {event.type}\ndata: {json.dumps(data, default=str)}\n\n"


async def _stream(runtime: Runtime, bot: str, body: InvokeBody) -> AsyncIterator[str]:
    """Server-sent events: one ``event`` per engine event, then ``reply`` (or ``error``)."""
    async for item in invoke_with_events(
        runtime, bot, session_id=body.session_id, text=body.text, user_id=body.user_id
    ):
        if isinstance(item, InvokeResult):
            yield _sse("reply", _result_json(item))
        elif isinstance(item, BotfactoryError):
            yield _sse("error", item.to_dict())
        elif isinstance(item, Exception):
            yield _sse("error", {"code": "internal", "message": "the turn failed; see the server log"})
        else:
            yield _sse("event", item)


def _sse(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data, default=str)}\n\n"
