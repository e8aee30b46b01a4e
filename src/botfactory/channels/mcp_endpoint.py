"""``/mcp/{bot}``: a bot's tools served to outside agents over MCP (streamable HTTP), under the bot's own policy.

An outside agent (Claude Desktop, an IDE, another framework) connects with any MCP client and sees the tools the
bot's entry agent is granted (sub-agents excepted), with their JSON schemas. Each ``tools/call`` passes the tool
gateway exactly as a call from the bot's own model does: schema validation, Cedar policy, rate limits,
credentials, timeout and an audit row naming the caller. A refusal (``denied by policy ...``, invalid arguments, a
rate limit) comes back as a tool result with ``isError`` so the agent can read it and go on; a tool name the
agent was not given is a protocol error (and is audited as a denied call).

Authentication is the server's (API key or JWT, see :mod:`botfactory.server.auth`). The caller is the policy's
user: a JWT's user id, ``key:<key id>`` for an API key, ``local`` for a keyless local request. ``/mcp`` without a
bot name means the one bot the caller's key is limited to.

The endpoint is stateless: every POST is answered on its own (no ``Mcp-Session-Id``), so any server of a
deployment can answer any request and nothing needs the app's lifespan. Both protocol eras are served: the
``initialize`` handshake (2025-11-25 and before) and the per-request envelope (2026-07-28).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from importlib.metadata import version as _version
from typing import Any, Final

from mcp import types
from mcp.server import Server, ServerRequestContext
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from botfactory.agents import Agent, Bot, BotRegistry
from botfactory.channels._access import principal_of
from botfactory.errors import (
    ApprovalPendingError,
    BotfactoryError,
    InvalidInputError,
    StoreError,
    ToolError,
    ToolNotFoundError,
)
from botfactory.gateway import (
    IDEMPOTENCY_META_KEY,
    CallContext,
    CredentialRef,
    Gateway,
    GatewayCall,
    GatewayTool,
    PolicySession,
    PolicyUser,
    SideEffect,
)
from botfactory.identity import Principal
from botfactory.store import new_id

__all__ = ["MCP_CHANNEL", "MCP_PATH", "mcp_routes"]

logger = logging.getLogger(__name__)

MCP_PATH: Final = "/mcp"
"""Where the endpoint is served: ``/mcp/{bot}``, or ``/mcp`` for the bot the caller's key is limited to."""
MCP_CHANNEL: Final = "mcp"
"""The ``context.session.channel`` policies see for calls made over MCP."""
LOCAL_USER: Final = "local"
"""The policy user of a keyless request from this machine (``botfactory up``)."""

_TARGET_KEY: Final = "botfactory.mcp"
_MAX_KEY_CHARS: Final = 128
_INSTRUCTIONS: Final = (
    "The tools of one botfactory bot. Every call passes the bot's policies, rate limits and audit log; a refused "
    "call is answered with isError and the reason."
)


def mcp_routes(bots: BotRegistry, gateway: Gateway, *, max_request_bytes: int) -> list[BaseRoute]:
    """The MCP endpoint's routes: ``/mcp/{bot}`` and ``/mcp``.

    They are plain ASGI routes (no method list), so they stay out of the OpenAPI document: MCP is not a REST
    operation.

    Args:
        bots: The bots whose tools are served.
        gateway: The gateway every call passes (``platform.engine.gateway``).
        max_request_bytes: Larger request bodies are refused with 413.
    """
    endpoint = _McpEndpoint(bots, gateway, max_request_bytes=max_request_bytes)
    return [Route(MCP_PATH, endpoint), Route(MCP_PATH + "/{bot}", endpoint)]


@dataclass(frozen=True, kw_only=True)
class _Target:
    """The bot a request is for and the user its calls are made for."""

    bot: Bot
    user: PolicyUser

    def tools(self) -> list[GatewayTool]:
        """The entry agent's granted tools, without its sub-agents (they need the bot's own turn to run)."""
        return [item for item in self.bot.agent.granted() if not isinstance(item, Agent)]


@dataclass(frozen=True, kw_only=True)
class _UnknownTool:
    """A name the caller asked for that no granted tool has: the gateway denies and audits the call."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object"})
    side_effect: SideEffect = "read"
    timeout_s: float | None = None
    credentials: tuple[CredentialRef, ...] = ()
    needs_approval: bool = False
    owner: str = ""

    async def invoke(self, arguments: dict[str, Any], context: CallContext) -> Any:
        """Never runs a thing; reached only when a ``log-only`` policy lets the call through."""
        raise ToolNotFoundError(f"there is no tool named '{self.name}'")


class _McpEndpoint:
    """The ASGI app behind both routes: resolves the bot and the caller, then serves one MCP request."""

    def __init__(self, bots: BotRegistry, gateway: Gateway, *, max_request_bytes: int) -> None:
        self._bots = bots
        self._gateway = gateway
        self._max_request_bytes = max_request_bytes
        self._server: Server[Any] = Server(
            "botfactory",
            version=_version("botfactory"),
            instructions=_INSTRUCTIONS,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        if request.method != "POST":
            # Stateless: no session to stream to (GET) or to end (DELETE); MCP clients expect 405 then.
            response = JSONResponse(
                {
                    "error": {
                        "code": "method_not_allowed",
                        "message": "this MCP endpoint is stateless and takes only POST; use an MCP client",
                    }
                },
                status_code=405,
                headers={"Allow": "POST"},
            )
            await response(scope, receive, send)
            return
        principal = principal_of(request)
        bot = self._bot(request.path_params.get("bot"), principal)
        scope.setdefault("state", {})[_TARGET_KEY] = _Target(bot=bot, user=_policy_user(principal))
        # A manager per request: stateless serving needs its task group only while the request runs, and this way
        # the endpoint works however the app is hosted (uvicorn without a lifespan, in-process ASGI transports).
        manager = StreamableHTTPSessionManager(
            self._server, stateless=True, max_request_body_size=self._max_request_bytes
        )
        async with manager.run():
            await manager.handle_request(scope, receive, send)

    def _bot(self, named: str | None, principal: Principal | None) -> Bot:
        """The bot the path names, or the one the caller's key is limited to.

        Raises:
            InvalidInputError: no bot is named and the key is not limited to one.
            ForbiddenError: the key is limited to another bot.
            BotNotFoundError: there is no such bot.
        """
        if named is None:
            named = principal.bot if principal is not None else None
            if named is None:
                known = ", ".join(bot.name for bot in self._bots) or "none"
                raise InvalidInputError(
                    f"name the bot whose tools you want in the URL, {MCP_PATH}/BOT (bots: {known}); {MCP_PATH} alone "
                    "is for keys limited to one bot (`botfactory keys create --bot NAME`)"
                )
        if principal is not None:
            principal.check_bot(named)
        return self._bots.get(named)

    async def _list_tools(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        target = _target_of(ctx)
        return types.ListToolsResult(tools=[_describe(tool) for tool in target.tools()])

    async def _call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        target = _target_of(ctx)
        tools = target.tools()
        tool = next((t for t in tools if t.name == params.name), None)
        call_id = new_id()
        call = GatewayCall(
            bot=target.bot.name,
            agent_path=target.bot.agent.name,
            tool=tool if tool is not None else _UnknownTool(name=params.name),
            arguments=params.arguments or {},
            granted=frozenset(t.name for t in tools),
            session=PolicySession(id=f"{MCP_CHANNEL}:{call_id}", channel=MCP_CHANNEL),
            turn_id=call_id,
            idempotency_key=_idempotency_key(target, params, f"{call_id}:{ctx.request_id}"),
            user=target.user,
        )
        try:
            result = await self._gateway.call(call)
        except BotfactoryError as exc:
            if tool is None:
                known = ", ".join(t.name for t in tools) or "none"
                raise MCPError(
                    code=types.INVALID_PARAMS,
                    message=f"bot {target.bot.name} has no tool named '{params.name}'; its tools: {known}",
                ) from None
            if isinstance(exc, StoreError):
                raise
            if isinstance(exc, ApprovalPendingError):
                return _error_result(
                    f"tool {params.name} needs a person's approval: request {exc.approval_id} is waiting. Once it "
                    f"is approved, call the tool again with the same arguments and the same _meta "
                    f"{IDEMPOTENCY_META_KEY!r}"
                    + ("" if _given_key(params) else "; this call sent none, so each call asks anew: send one")
                )
            logger.info(
                "bot=<%s>, tool=<%s>, code=<%s> | mcp tool call refused or failed", call.bot, params.name, exc.code
            )
            return _error_result(exc.message if isinstance(exc, ToolError) else f"tool {params.name}: {exc.message}")
        except Exception as exc:  # a tool's own bug: the caller gets a short error, the log the traceback
            logger.warning("bot=<%s>, tool=<%s> | tool raised", call.bot, params.name, exc_info=True)
            return _error_result(f"tool {params.name} failed ({type(exc).__name__}); see the server log")
        return _result(result)


def _target_of(ctx: ServerRequestContext[Any]) -> _Target:
    request = ctx.request
    target = request.scope.get("state", {}).get(_TARGET_KEY) if isinstance(request, Request) else None
    if not isinstance(target, _Target):  # only reachable if the server were mounted without _McpEndpoint
        raise MCPError(code=types.INTERNAL_ERROR, message="the MCP request reached no bot")
    return target


def _given_key(params: types.CallToolRequestParams) -> str | None:
    """The idempotency key the caller sent in ``_meta``, if any.

    Raises:
        MCPError: it is not a string of 1-128 characters.
    """
    given = (params.meta or {}).get(IDEMPOTENCY_META_KEY)
    if given is None:
        return None
    if not isinstance(given, str) or not 0 < len(given) <= _MAX_KEY_CHARS:
        raise MCPError(
            code=types.INVALID_PARAMS,
            message=f"_meta {IDEMPOTENCY_META_KEY!r} must be a string of 1-{_MAX_KEY_CHARS} characters",
        )
    return given


def _idempotency_key(target: _Target, params: types.CallToolRequestParams, fresh: str) -> str:
    """The caller's own key when it sent one (a retry, or a call again after approval, is the same call), else a
    new one; the caller's keys are kept apart from every other caller's and bot's."""
    given = _given_key(params)
    if given is None:
        return f"{MCP_CHANNEL}:{fresh}"
    caller = hashlib.sha256(f"{target.user.id}\n{target.bot.name}".encode()).hexdigest()[:24]
    return f"{MCP_CHANNEL}:{caller}:{given}"


def _policy_user(principal: Principal | None) -> PolicyUser:
    """The user policies see: a JWT's user, the API key, or ``local``."""
    if principal is None:
        return PolicyUser(id=LOCAL_USER)
    if principal.user_id is not None:
        return PolicyUser(id=principal.user_id, groups=principal.groups)
    if principal.key_id is not None:
        return PolicyUser(id=f"key:{principal.key_id}", groups=principal.groups)
    return PolicyUser(id=LOCAL_USER, groups=principal.groups)


def _describe(tool: GatewayTool) -> types.Tool:
    return types.Tool(
        name=tool.name,
        description=tool.description,
        input_schema=tool.parameters,
        annotations=types.ToolAnnotations(read_only_hint=tool.side_effect == "read"),
    )


def _result(value: Any) -> types.CallToolResult:
    """Text as text; anything else as JSON text, and objects also as structured content."""
    if isinstance(value, str):
        return types.CallToolResult(content=[types.TextContent(text=value)])
    text = json.dumps(value, default=str, ensure_ascii=False)
    structured = json.loads(text) if isinstance(value, dict) else None
    return types.CallToolResult(content=[types.TextContent(text=text)], structured_content=structured)


def _error_result(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=message)], is_error=True)
