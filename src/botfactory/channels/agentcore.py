"""The AgentCore runtime contract, served: ``POST /invocations`` and ``GET /ping``, so clients written for an
AgentCore runtime (or the ``bedrock-agentcore`` SDK's conventions) can call botfactory bots.

``POST /invocations`` takes ``{"prompt": "...", "user_id": "..."}`` (``user_id`` optional), the SDK samples'
payload. The session is the ``X-Amzn-Bedrock-AgentCore-Runtime-Session-Id`` header (33 to 256 characters, chosen by
the caller); without it a new session is started, and its id is returned in the same response header. The bot is
``settings.agentcore_bot`` unless the ``X-Amzn-Bedrock-AgentCore-Runtime-Custom-Bot`` header names another. A
``X-Amzn-Bedrock-AgentCore-Runtime-Request-Id`` makes the call idempotent: a retry with the same id is not new work.

The answer is JSON ``{"result": reply, "session_id", "turn_id", "status", "error_code"}`` (``result`` as in the SDK
samples' ``return {"result": ...}``), or with ``Accept: text/event-stream`` server-sent events in the SDK's own
framing: ``data:`` lines only, one per engine event (``{"type": "tool_call_started", ...}``), then one with the same
object as the JSON answer, or ``{"error": message, "error_type": code}`` when the call fails.

``GET /ping`` answers ``{"status": "Healthy" | "HealthyBusy", "time_of_last_update": <unix seconds>}``:
``HealthyBusy`` while this process is running turns.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from botfactory.channels._access import acting_user, check_bot_allowed
from botfactory.channels._streaming import invoke_with_events
from botfactory.channels.http import read_json
from botfactory.errors import BotfactoryError, InvalidInputError
from botfactory.runtime import InvokeResult, Runtime

__all__ = [
    "AGENTCORE_BOT_HEADER",
    "AGENTCORE_REQUEST_HEADER",
    "AGENTCORE_SESSION_HEADER",
    "InvocationBody",
    "agentcore_routes",
]

logger = logging.getLogger(__name__)

AGENTCORE_SESSION_HEADER: Final = "X-Amzn-Bedrock-AgentCore-Runtime-Session-Id"
AGENTCORE_REQUEST_HEADER: Final = "X-Amzn-Bedrock-AgentCore-Runtime-Request-Id"
AGENTCORE_BOT_HEADER: Final = "X-Amzn-Bedrock-AgentCore-Runtime-Custom-Bot"
_MIN_SESSION_CHARS: Final = 33
_MAX_SESSION_CHARS: Final = 256
_EXAMPLE: Final = '{"prompt": "Hello"}'


class InvocationBody(BaseModel):
    """Body of ``POST /invocations``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    prompt: str
    user_id: str | None = Field(default=None, min_length=1, max_length=256)


class _PingState:
    """The status ``/ping`` reports and when it last changed, as the SDK's app keeps it."""

    def __init__(self, busy: Callable[[], bool]) -> None:
        self._busy = busy
        self._status = "Healthy"
        self._since = time.time()

    def read(self) -> dict[str, Any]:
        status = "HealthyBusy" if self._busy() else "Healthy"
        if status != self._status:
            self._status, self._since = status, time.time()
        return {"status": status, "time_of_last_update": int(self._since)}


def agentcore_routes(runtime: Runtime, *, busy: Callable[[], bool] = lambda: False) -> list[BaseRoute]:
    """The contract's routes, bound to a runtime.

    Args:
        busy: Whether this process is running turns now (``/ping`` then says ``HealthyBusy``).
    """
    ping_state = _PingState(busy)

    async def ping(request: Request) -> Response:
        return JSONResponse(ping_state.read())

    async def invocations(request: Request) -> Response:
        session_id = _session_id(request)
        bot = request.headers.get(AGENTCORE_BOT_HEADER) or runtime.settings.agentcore_bot
        check_bot_allowed(request, bot)
        runtime.bots.get(bot)
        body = _parse(await read_json(request, max_bytes=runtime.settings.max_request_bytes))
        body = body.model_copy(update={"user_id": acting_user(request, body.user_id)})
        dedup_key = request.headers.get(AGENTCORE_REQUEST_HEADER) or None
        runtime.check_input(session_id=session_id, text=body.prompt, user_id=body.user_id, dedup_key=dedup_key)
        headers = {AGENTCORE_SESSION_HEADER: session_id}
        logger.debug("session_id=<%s>, bot=<%s> | agentcore invocation", session_id, bot)
        if "text/event-stream" not in request.headers.get("accept", ""):
            result = await runtime.invoke(
                bot, session_id=session_id, text=body.prompt, user_id=body.user_id, dedup_key=dedup_key
            )
            return JSONResponse(_result_json(result), headers=headers)
        return StreamingResponse(
            _stream(runtime, bot, session_id, body, dedup_key),
            media_type="text/event-stream",
            headers={**headers, "cache-control": "no-cache", "x-accel-buffering": "no"},
        )

    return [
        Route("/invocations", invocations, methods=["POST"]),
        Route("/ping", ping, methods=["GET"]),
    ]


def _session_id(request: Request) -> str:
    """The caller's session id, checked as the contract requires, or a new one."""
    given = request.headers.get(AGENTCORE_SESSION_HEADER)
    if given is None:
        return f"agentcore-{uuid.uuid4().hex}"
    if not (_MIN_SESSION_CHARS <= len(given) <= _MAX_SESSION_CHARS and given.isprintable()):
        raise InvalidInputError(
            f"the {AGENTCORE_SESSION_HEADER} header must be {_MIN_SESSION_CHARS} to {_MAX_SESSION_CHARS} printable "
            f"characters (it has {len(given)}); use a UUID-based id, or leave it out to start a new session"
        )
    return given


def _parse(data: Any) -> InvocationBody:
    if not isinstance(data, dict):
        raise InvalidInputError(f"the payload must be a JSON object like {_EXAMPLE}")
    if "prompt" not in data:
        raise InvalidInputError(f'the payload needs a "prompt" string, like {_EXAMPLE}')
    try:
        return InvocationBody.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors())
        raise InvalidInputError(f"invalid payload ({problems}); send {_EXAMPLE}") from None


def _result_json(result: InvokeResult) -> dict[str, Any]:
    return {
        "result": result.reply,
        "session_id": result.session_id,
        "turn_id": result.turn_id,
        "status": result.status,
        "error_code": result.error_code,
    }


async def _stream(
    runtime: Runtime, bot: str, session_id: str, body: InvocationBody, dedup_key: str | None
) -> AsyncIterator[str]:
    """The turn's events as ``data:`` lines, then the result (or the error), as the SDK's app streams."""
    async for item in invoke_with_events(
        runtime, bot, session_id=session_id, text=body.prompt, user_id=body.user_id, dedup_key=dedup_key
    ):
        if isinstance(item, InvokeResult):
            yield _data(_result_json(item))
        elif isinstance(item, BotfactoryError):
            yield _data({"error": item.message, "error_type": item.code})
        elif isinstance(item, Exception):
            yield _data({"error": "the turn failed; see the server log", "error_type": "internal"})
        else:
            yield _data(item)


def _data(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, default=str, ensure_ascii=False)}\n\n"
