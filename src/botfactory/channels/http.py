"""The HTTP channel: invoke a bot and get its reply, as JSON or as a stream of server-sent events."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from botfactory.errors import BotfactoryError, InvalidInputError, PayloadTooLargeError
from botfactory.runtime import InvokeResult, Runtime

__all__ = ["InvokeBody", "http_routes", "read_json"]

logger = logging.getLogger(__name__)


class InvokeBody(BaseModel):
    """Body of ``POST /v1/bots/{bot}/invoke``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    session_id: str = Field(min_length=1, max_length=256)
    text: str
    user_id: str | None = Field(default=None, min_length=1, max_length=256)


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


def _parse_invoke(data: Any) -> InvokeBody:
    if not isinstance(data, dict):
        raise InvalidInputError('the request body must be a JSON object like {"session_id": "...", "text": "..."}')
    try:
        return InvokeBody.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors())
        raise InvalidInputError(f"invalid request body ({problems})") from None


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
        runtime.check_input(session_id=body.session_id, text=body.text, user_id=body.user_id)
        wants_stream = request.query_params.get("stream") in (
            "1",
            "true",
        ) or "text/event-stream" in request.headers.get("accept", "")
        if not wants_stream:
            result = await runtime.invoke(bot, session_id=body.session_id, text=body.text, user_id=body.user_id)
            return JSONResponse(_result_json(result))
        return StreamingResponse(_stream(runtime, bot, body), media_type="text/event-stream")

    return [
        Route("/v1/bots", list_bots, methods=["GET"]),
        Route("/v1/bots/{bot}/invoke", invoke, methods=["POST"]),
    ]


async def _stream(runtime: Runtime, bot: str, body: InvokeBody) -> AsyncIterator[str]:
    """Server-sent events: one ``event`` per engine event, then ``reply`` (or ``error``)."""
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    async def on_event(event: dict[str, Any]) -> None:
        await queue.put(event)

    async def run() -> InvokeResult:
        try:
            return await runtime.invoke(
                bot, session_id=body.session_id, text=body.text, user_id=body.user_id, on_event=on_event
            )
        finally:
            await queue.put(None)

    task = asyncio.create_task(run())
    try:
        while (event := await queue.get()) is not None:
            yield _sse("event", event)
        try:
            yield _sse("reply", _result_json(await task))
        except BotfactoryError as exc:
            yield _sse("error", exc.to_dict())
        except Exception:
            logger.exception("session_id=<%s> | streamed turn failed", body.session_id)
            yield _sse("error", {"code": "internal", "message": "the turn failed; see the server log"})
    finally:
        if not task.done():
            task.cancel()


def _sse(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data, default=str)}\n\n"
