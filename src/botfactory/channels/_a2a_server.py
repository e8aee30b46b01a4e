"""The A2A channel's machinery on the ``a2a-sdk`` server: the agent card, the executor and the JSON-RPC routes.

Imported only by :func:`botfactory.channels.a2a.a2a_routes`, and only when the ``a2a`` extra is installed. One
request handler serves every bot: the bot comes from the path, and reaches the executor in the call context.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any, Final

from a2a.auth.user import User
from a2a.helpers import new_text_message
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.context import ServerCallContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.server.routes import DefaultServerCallContextBuilder
from a2a.server.routes.jsonrpc_dispatcher import JsonRpcDispatcher
from a2a.server.tasks import InMemoryTaskStore
from a2a.types.a2a_pb2 import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentProvider,
    AgentSkill,
    APIKeySecurityScheme,
    HTTPAuthSecurityScheme,
    SecurityRequirement,
    SecurityScheme,
    StringList,
)
from a2a.utils.constants import PROTOCOL_VERSION_CURRENT, TransportProtocol
from a2a.utils.errors import InternalError, InvalidParamsError, UnsupportedOperationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Message

from botfactory.agents import Bot
from botfactory.channels._access import acting_user, check_bot_allowed, principal_of
from botfactory.errors import BotfactoryError, InvalidInputError, PayloadTooLargeError
from botfactory.runtime import InvokeResult, Runtime

__all__ = ["SESSION_PREFIX", "a2a_server_routes", "agent_card", "session_id_for"]

logger = logging.getLogger(__name__)

SESSION_PREFIX: Final = "a2a"
_BOT_STATE: Final = "botfactory.bot"
_USER_STATE: Final = "botfactory.user_id"
_TEXT: Final = "text/plain"
_BEARER: Final = "bearer"
_API_KEY: Final = "apiKey"


def session_id_for(bot: str, context_id: str) -> str:
    """The botfactory session an A2A conversation (``contextId``) with ``bot`` runs in."""
    return f"{SESSION_PREFIX}:{bot}:{context_id}"


def agent_card(bot: Bot, *, url: str, version: str) -> AgentCard:
    """The A2A agent card of ``bot``, served at ``url`` (its JSON-RPC endpoint).

    The card declares the two ways botfactory accepts a key (``Authorization: Bearer`` and ``X-Api-Key``) and one
    skill, the bot itself.
    """
    description = bot.description or bot.agent.description or f"The {bot.name} bot."
    return AgentCard(
        name=bot.name,
        description=description,
        version=version,
        provider=AgentProvider(organization="botfactory", url=url),
        supported_interfaces=[
            AgentInterface(
                url=url, protocol_binding=TransportProtocol.JSONRPC.value, protocol_version=PROTOCOL_VERSION_CURRENT
            )
        ],
        capabilities=AgentCapabilities(streaming=True, push_notifications=False, extended_agent_card=False),
        security_schemes={
            _BEARER: SecurityScheme(
                http_auth_security_scheme=HTTPAuthSecurityScheme(
                    scheme="Bearer", description="A botfactory API key, or a JWT when [oidc] is set"
                )
            ),
            _API_KEY: SecurityScheme(
                api_key_security_scheme=APIKeySecurityScheme(
                    location="header", name="X-Api-Key", description="A botfactory API key"
                )
            ),
        },
        security_requirements=[
            SecurityRequirement(schemes={_BEARER: StringList()}),
            SecurityRequirement(schemes={_API_KEY: StringList()}),
        ],
        default_input_modes=[_TEXT],
        default_output_modes=[_TEXT],
        skills=[AgentSkill(id=bot.name, name=bot.name, description=description, tags=["chat"])],
    )


class _Caller(User):
    """The authenticated caller, as the SDK's task store scopes tasks: one bot and one principal."""

    def __init__(self, owner: str) -> None:
        self._owner = owner

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def user_name(self) -> str:
        return self._owner


class _ContextBuilder(DefaultServerCallContextBuilder):
    """Carries the bot and the caller's user from the request (already authorized) to the executor."""

    def build(self, request: Request) -> ServerCallContext:
        context = super().build(request)
        context.state[_BOT_STATE] = request.path_params["bot"]
        context.state[_USER_STATE] = acting_user(request, None)
        return context

    def build_user(self, request: Request) -> User:
        principal = principal_of(request)
        who = "in-process"
        if principal is not None:
            who = principal.user_id or principal.key_id or principal.kind
        return _Caller(f"{request.path_params['bot']}|{who}")


class _BotExecutor(AgentExecutor):
    """Answers each A2A message with one turn of the bot, as a single agent message (no long-running task)."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        state = context.call_context.state
        bot: str = state[_BOT_STATE]
        user_id: str | None = state[_USER_STATE]
        context_id = context.context_id or ""
        text = context.get_user_input()
        if not text.strip():
            raise InvalidParamsError(message="the message has no text; send at least one text part")
        session_id = session_id_for(bot, context_id)
        message = context.message
        dedup_key = _dedup_key(context.call_context.user.user_name, message)
        try:
            self._runtime.check_input(session_id=session_id, text=text, user_id=user_id, dedup_key=dedup_key)
            logger.debug("session_id=<%s>, bot=<%s> | a2a message", session_id, bot)
            result = await self._runtime.invoke(
                bot, session_id=session_id, text=text, user_id=user_id, dedup_key=dedup_key
            )
        except (InvalidInputError, PayloadTooLargeError) as exc:
            raise InvalidParamsError(message=exc.message) from None
        except BotfactoryError as exc:
            raise InternalError(message=f"{exc.code}: {exc.message}") from None
        except Exception:
            logger.exception("session_id=<%s>, bot=<%s> | a2a turn failed", session_id, bot)
            raise InternalError(message="the turn failed; see the server log") from None
        reply = new_text_message(_reply_text(result), context_id=context_id)
        reply.metadata.update(
            {"session_id": result.session_id, "turn_id": result.turn_id or "", "status": result.status}
        )
        if result.error_code:
            reply.metadata.update({"error_code": result.error_code})
        await event_queue.enqueue_event(reply)

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        raise UnsupportedOperationError(message="messages are answered at once; there is no task to cancel")


def _dedup_key(owner: str, message: Any) -> str | None:
    """A retry of the same A2A message (same ``messageId``, same caller) is the same botfactory message."""
    message_id = getattr(message, "message_id", "")
    if not message_id:
        return None
    digest = hashlib.sha256(f"{owner}\n{message_id}".encode()).hexdigest()[:32]
    return f"{SESSION_PREFIX}:{digest}"


def _reply_text(result: InvokeResult) -> str:
    if result.reply:
        return result.reply
    reason = f" ({result.error_code})" if result.error_code else ""
    return f"[no reply: the turn ended {result.status}{reason}]"


async def _limited_body(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLargeError(f"the request body has {declared} bytes, over the limit of {max_bytes}")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > max_bytes:
            raise PayloadTooLargeError(f"the request body is over the limit of {max_bytes} bytes")
    return bytes(body)


def a2a_server_routes(runtime: Runtime, *, prefix: str, card_path: str, version: str) -> list[BaseRoute]:
    """The card and JSON-RPC routes of every bot under ``{prefix}/{bot}``."""
    template = AgentCard(
        name="botfactory",
        description="botfactory bots",
        version=version,
        supported_interfaces=[
            AgentInterface(
                url="http://localhost/",
                protocol_binding=TransportProtocol.JSONRPC.value,
                protocol_version=PROTOCOL_VERSION_CURRENT,
            )
        ],
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=[_TEXT],
        default_output_modes=[_TEXT],
        skills=[AgentSkill(id="chat", name="chat", description="Chat with the bot.", tags=["chat"])],
    )
    handler = DefaultRequestHandler(
        agent_executor=_BotExecutor(runtime), task_store=InMemoryTaskStore(), agent_card=template
    )
    dispatcher = JsonRpcDispatcher(handler, context_builder=_ContextBuilder(), enable_v0_3_compat=True)

    async def card(request: Request) -> Response:
        bot = runtime.bots.get(request.path_params["bot"])
        url = str(request.base_url).rstrip("/") + f"{prefix}/{bot.name}"
        return JSONResponse(agent_card_to_dict(agent_card(bot, url=url, version=version)))

    async def rpc(request: Request) -> Response:
        bot = request.path_params["bot"]
        check_bot_allowed(request, bot)
        runtime.bots.get(bot)
        body = await _limited_body(request, runtime.settings.max_request_bytes)
        pending = [body]

        async def replay() -> Message:
            # The body once (already read, within the limit), then the connection's own events (disconnects).
            if pending:
                return {"type": "http.request", "body": pending.pop(), "more_body": False}
            return await request.receive()

        return await dispatcher.handle_requests(Request(request.scope, replay))

    return [
        Route(f"{prefix}/{{bot}}{card_path}", card, methods=["GET"]),
        Route(f"{prefix}/{{bot}}", rpc, methods=["POST"]),
    ]
