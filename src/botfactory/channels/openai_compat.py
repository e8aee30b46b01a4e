"""The OpenAI-compatible channel: the official ``openai`` client (and tools built on it) talking to bots and models.

``POST /v1/chat/completions`` talks to a bot: ``model`` is the bot's name, ``user`` the user id, and the
``X-Session-Id`` header the session (a new one is made, and returned in the same header, when it is missing). Only
the last user message is sent to the bot: the session holds the history. The message goes through the inbox and a
durable turn like a message from any other channel.

``POST /v1/inference/chat/completions`` serves the configured model aliases (``model`` = ``large``, ``small``, ...)
to agents running outside botfactory. A call naming a bot in ``X-Botfactory-Bot`` is checked against that bot's
budgets (bot per day, ``user`` per day, ``X-Session-Id`` for the session's life) before the model is called, and
its tokens and cost are added to the same counters turns use.

Errors are answered in OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``, with the status of the
botfactory error, so the client raises its usual exceptions (``NotFoundError``, ``RateLimitError``, ...).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from botfactory import errors
from botfactory.channels._access import acting_user, check_bot_allowed, key_bot, principal_of
from botfactory.channels.http import KEEPALIVE_S, read_json
from botfactory.errors import (
    BotfactoryError,
    BotNotFoundError,
    InvalidFieldError,
    ModelNotFoundError,
)
from botfactory.inference import (
    ChatCompletionBody,
    Inference,
    ModelRequest,
    ModelResponse,
    chat_chunk,
    completion_chunks,
    completion_object,
    last_user_text,
    new_completion_id,
    openai_error,
    parse_chat_body,
    to_model_request,
)
from botfactory.messages import Message, Usage
from botfactory.observability import Metrics
from botfactory.runtime import InvokeResult, Runtime, TurnLimits, utc_day
from botfactory.store import UsageDelta

__all__ = ["BOT_HEADER", "SESSION_HEADER", "openai_routes"]

logger = logging.getLogger(__name__)

SESSION_HEADER: Final = "X-Session-Id"
"""The session a request continues; answered on every bot completion (a new id when the request had none)."""
BOT_HEADER: Final = "X-Botfactory-Bot"
"""The bot an inference call is made for: its budgets apply and its counters grow."""
_MAX_KEY_CHARS: Final = 256
_Handler = Callable[[Request], Awaitable[Response]]


def openai_routes(runtime: Runtime, inference: Inference, *, metrics: Metrics | None = None) -> list[BaseRoute]:
    """The OpenAI-compatible routes: bots at ``/v1/chat/completions``, model aliases under ``/v1/inference``.

    ``metrics`` counts the tokens and cost of inference calls made for a bot (``X-Botfactory-Bot`` or a bot key).
    """
    max_bytes = runtime.settings.max_request_bytes

    async def list_bots(request: Request) -> Response:
        principal = principal_of(request)
        allowed = [bot.name for bot in runtime.bots if principal is None or principal.allows_bot(bot.name)]
        return JSONResponse({"object": "list", "data": [_model_entry(name) for name in allowed]})

    async def list_aliases(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [_model_entry(alias) for alias in inference.aliases]})

    @_answers_in_openai_shape(retry_safe=False)
    async def bot_completion(request: Request) -> Response:
        body = parse_chat_body(await read_json(request, max_bytes=max_bytes))
        check_bot_allowed(request, body.model)  # before the lookup: a key for one bot learns of no others
        if body.model not in runtime.bots:
            known = ", ".join(bot.name for bot in runtime.bots) or "none"
            raise ModelNotFoundError(f"no bot named {body.model!r} (bots: {known}); GET /v1/models lists them")
        body = body.model_copy(update={"user": acting_user(request, body.user)})
        text = last_user_text(body)
        session_id = _header_key(request, SESSION_HEADER) or str(uuid.uuid4())
        runtime.check_input(session_id=session_id, text=text, user_id=body.user)
        headers = {SESSION_HEADER: session_id}
        if body.stream:
            return StreamingResponse(
                _bot_stream(runtime, body, session_id=session_id, text=text),
                media_type="text/event-stream",
                headers={**headers, "cache-control": "no-cache", "x-accel-buffering": "no"},
            )
        result = await runtime.invoke(body.model, session_id=session_id, text=text, user_id=body.user)
        _raise_if_failed(result)
        usage = await _turn_usage(runtime, result)
        reply = ModelResponse(
            message=Message(role="assistant", content=result.reply), usage=usage, model="", latency_s=0
        )
        return JSONResponse(
            completion_object(reply, model=body.model, completion_id=new_completion_id()), headers=headers
        )

    @_answers_in_openai_shape(retry_safe=True)
    async def model_completion(request: Request) -> Response:
        body = parse_chat_body(await read_json(request, max_bytes=max_bytes))
        if body.model not in inference.aliases:
            known = ", ".join(inference.aliases) or "none"
            raise ModelNotFoundError(
                f"no model alias {body.model!r} (aliases: {known}); GET /v1/inference/models lists them"
            )
        model_request = to_model_request(body)
        bot = _header_key(request, BOT_HEADER) or key_bot(request)
        if bot is not None:
            check_bot_allowed(request, bot)
        response = await _metered_complete(
            runtime,
            inference,
            body.model,
            model_request,
            bot=bot,
            session_id=_header_key(request, SESSION_HEADER),
            user_id=acting_user(request, body.user),
            metrics=metrics,
        )
        completion_id, created = new_completion_id(), int(time.time())
        if not body.stream:
            return JSONResponse(completion_object(response, model=body.model, completion_id=completion_id))
        chunks = completion_chunks(
            response, model=body.model, completion_id=completion_id, created=created, include_usage=body.include_usage
        )
        return StreamingResponse(
            _sse_chunks(chunks), media_type="text/event-stream", headers={"cache-control": "no-cache"}
        )

    return [
        Route("/v1/models", list_bots, methods=["GET"]),
        Route("/v1/chat/completions", bot_completion, methods=["POST"]),
        Route("/v1/inference/models", list_aliases, methods=["GET"]),
        Route("/v1/inference/chat/completions", model_completion, methods=["POST"]),
    ]


def _model_entry(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "botfactory"}


def _header_key(request: Request, name: str) -> str | None:
    value = request.headers.get(name)
    if value is None:
        return None
    if not (0 < len(value) <= _MAX_KEY_CHARS and value.isprintable()):
        raise InvalidFieldError(f"the {name} header must be 1 to {_MAX_KEY_CHARS} printable characters", param=name)
    return value


async def _metered_complete(
    runtime: Runtime,
    inference: Inference,
    alias: str,
    request: ModelRequest,
    *,
    bot: str | None,
    session_id: str | None,
    user_id: str | None,
    metrics: Metrics | None = None,
) -> ModelResponse:
    """Run one inference call; for a named bot, check its budgets first and count the call after."""
    if bot is None:  # platform-level: counted only in the inference service's per-alias statistics
        return await inference.complete(alias, request)
    try:
        found = runtime.bots.get(bot)
    except BotNotFoundError:
        raise InvalidFieldError(f"the {BOT_HEADER} header names no bot: {bot!r}", param=BOT_HEADER) from None
    settings = runtime.settings
    limits = TurnLimits(
        settings=settings,
        budgets=found.budgets or settings.budgets,
        controls=runtime.controls,
        store=runtime.queue,
        bot=found.name,
        session_id=session_id,
        user_id=user_id,
    )
    prompt_chars = sum(len(m.content) for m in request.messages)
    await limits.before_model_call(agent_path=found.agent.name, model=alias, prompt_chars=prompt_chars)
    response = await inference.complete(alias, request)
    usage = response.usage
    cost = settings.price(alias).cost(usage.input_tokens, usage.output_tokens)
    await runtime.queue.add_usage(
        UsageDelta(
            bot=found.name,
            user_id=user_id,
            session_id=session_id,
            day=utc_day(time.time()),
            tokens=usage.total_tokens,
            cost=cost,
            model=alias,
        )
    )
    if metrics is not None:
        metrics.model_call(
            bot=found.name,
            model=alias,
            user_id=user_id,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cost=cost,
        )
    logger.debug(
        "bot=<%s>, session_id=<%s>, alias=<%s>, tokens=<%d> | inference call metered",
        found.name,
        session_id,
        alias,
        usage.total_tokens,
    )
    return response


def _raise_if_failed(result: InvokeResult) -> None:
    """A turn that did not complete, raised with the status its code has (a budget -> 429, a cancel -> 409, ...)."""
    if result.status == "completed":
        return
    code = result.error_code or result.status
    known = _ERRORS_BY_CODE.get(code)
    error = BotfactoryError(result.reply or f"the turn ended as {result.status} ({code}) without a reply")
    error.code = code
    error.http_status = 409 if result.status == "cancelled" else known.http_status if known is not None else 500
    raise error


def _error_types(root: type[BotfactoryError]) -> dict[str, type[BotfactoryError]]:
    found = {root.code: root}
    for sub in root.__subclasses__():
        found.update(_error_types(sub))
    return found


_ERRORS_BY_CODE: Final = _error_types(errors.BotfactoryError)


async def _turn_usage(runtime: Runtime, result: InvokeResult) -> Usage:
    """The tokens of the turn that answered, as the store recorded them."""
    if result.turn_id is None:
        return Usage()
    turn = await runtime.store.get_turn(result.turn_id)
    return Usage(input_tokens=turn.input_tokens, output_tokens=turn.output_tokens)


async def _bot_stream(runtime: Runtime, body: ChatCompletionBody, *, session_id: str, text: str) -> AsyncIterator[str]:
    """The bot's reply as chunks: the role at once, keep-alive comments while the turn runs, the reply, the end."""
    completion_id, created = new_completion_id(), int(time.time())

    def chunk(**fields: Any) -> str:
        return _sse(
            chat_chunk(
                completion_id=completion_id,
                created=created,
                model=body.model,
                include_usage=body.include_usage,
                **fields,
            )
        )

    yield chunk(delta={"role": "assistant", "content": ""})
    task = asyncio.create_task(runtime.invoke(body.model, session_id=session_id, text=text, user_id=body.user))
    try:
        while not task.done():
            done, _ = await asyncio.wait({task}, timeout=KEEPALIVE_S)
            if not done:
                yield ": ping\n\n"
        result = task.result()
        _raise_if_failed(result)
        yield chunk(delta={"content": result.reply})
        yield chunk(finish_reason="stop")
        if body.include_usage:
            yield _sse(
                chat_chunk(
                    completion_id=completion_id,
                    created=created,
                    model=body.model,
                    usage=await _turn_usage(runtime, result),
                )
            )
    except BotfactoryError as exc:
        # Headers are sent: the error goes in the stream, where the openai client raises it as an APIError.
        yield _sse(_error_body(exc))
    except Exception:
        logger.exception("session_id=<%s> | streamed chat completion failed", session_id)
        yield _sse(openai_error("the turn failed; see the server log", type="server_error", code="internal"))
    finally:
        if not task.done():
            task.cancel()
    yield "data: [DONE]\n\n"


async def _sse_chunks(chunks: list[dict[str, Any]]) -> AsyncIterator[str]:
    for chunk in chunks:
        yield _sse(chunk)
    yield "data: [DONE]\n\n"


def _sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False, default=str)}\n\n"


def _error_type(exc: BotfactoryError) -> str:
    if exc.http_status == 429:
        return "insufficient_quota" if exc.code == errors.BudgetExceededError.code else "rate_limit_error"
    if exc.http_status >= 500:
        return "server_error"
    return "invalid_request_error"


def _error_body(exc: BotfactoryError) -> dict[str, Any]:
    param = (
        exc.param if isinstance(exc, InvalidFieldError) else "model" if isinstance(exc, ModelNotFoundError) else None
    )
    return openai_error(exc.message, type=_error_type(exc), code=exc.code, param=param)


def _answers_in_openai_shape(*, retry_safe: bool) -> Callable[[_Handler], _Handler]:
    """Answer botfactory errors in OpenAI's error shape, and tell OpenAI clients whether to retry.

    Args:
        retry_safe: Repeating the request does no harm, so retryable errors may be retried. A bot completion is
            not: a retried one queues its message again.
    """

    def decorate(handler: _Handler) -> _Handler:
        @functools.wraps(handler)
        async def wrapped(request: Request) -> Response:
            try:
                return await handler(request)
            except BotfactoryError as exc:
                if exc.http_status >= 500:
                    logger.warning("path=<%s>, code=<%s> | request failed: %s", request.url.path, exc.code, exc.message)
                # The openai client retries 429 and 5xx unless told otherwise; a used-up budget stays used up.
                retry = "true" if retry_safe and exc.retryable else "false"
                return JSONResponse(_error_body(exc), status_code=exc.http_status, headers={"x-should-retry": retry})

        return wrapped

    return decorate
