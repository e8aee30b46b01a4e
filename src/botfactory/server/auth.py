"""Authentication of every HTTP request: an ASGI middleware in front of all routes.

A request presents an API key as ``Authorization: Bearer <key>`` or ``X-Api-Key: <key>``, or, when ``[oidc]`` is
set, a JWT from the OpenID Connect issuer as ``Authorization: Bearer <token>`` (see docs/authentication.md). Exempt are health checks
(``GET /healthz``, ``GET /ping``), A2A agent cards (``GET /a2a/{bot}/.well-known/agent-card.json``, public as A2A
discovery expects; they describe the bot and how to authenticate), Slack's routes (``/slack/...``), which verify
Slack's signature instead, and the web console (``/`` and ``/console/...``), which checks its own login cookie; in
``local`` mode a console request from this machine is marked with the local principal and needs no login.
Everything else, including routes added later, needs a key: the middleware guards paths, not a list of routes.

In ``local`` mode (``botfactory up``, bound to 127.0.0.1) a request without a key is allowed when it comes from
this machine and not through a proxy or a web page of another origin; a request with a key or a JWT is checked as
usual.

The principal is left in ``scope["state"]["principal"]`` (``request.state.principal``). A key scoped to one bot is
refused with 403 on ``/v1/bots/{other}/...``; other routes check ``principal.allows_bot`` themselves.

It is a plain ASGI middleware rather than Starlette's ``BaseHTTPMiddleware``, which would buffer streamed responses.
"""

from __future__ import annotations

import logging
import re
from typing import Final, Literal
from urllib.parse import urlsplit

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from botfactory.errors import BotfactoryError, ForbiddenError, UnauthenticatedError
from botfactory.identity import JWT_SHAPE, KEY_PREFIX, LOCAL_PRINCIPAL, ApiKeys, OidcVerifier, Principal

__all__ = ["AuthMiddleware", "AuthMode", "is_console", "is_exempt"]

logger = logging.getLogger(__name__)

AuthMode = Literal["keys", "local"]
"""``keys``: every non-exempt request needs an API key. ``local``: requests from this machine need none."""

_EXEMPT_GET: Final = frozenset({"/healthz", "/ping", "/openapi.json"})
_EXEMPT_PREFIX: Final = "/slack/"
# A2A agent cards are public, as A2A discovery expects: they tell a client how to authenticate (docs/a2a.md).
_AGENT_CARD: Final = re.compile(r"^/a2a/[^/]+/\.well-known/agent-card\.json$")
_BOT_PATH: Final = re.compile(r"^/v1/bots/([^/]+)(?:/|$)")
_LOOPBACK_ADDRESSES: Final = frozenset({"127.0.0.1", "::1", "::ffff:127.0.0.1"})
_LOOPBACK_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "::1"})
_PROXY_HEADERS: Final = (b"forwarded", b"x-forwarded-for", b"x-real-ip")
_HOW = "send Authorization: Bearer <key> (or X-Api-Key: <key>); create one with `botfactory keys create --bot NAME`"


def is_console(path: str) -> bool:
    """Whether a path is the web console's (``/``, ``/console``, ``/console/...``): it authenticates by cookie."""
    return path in ("/", "/console") or path.startswith("/console/")


def is_exempt(method: str, path: str) -> bool:
    """Whether a request needs no API key: health checks, the API's description, A2A agent cards and Slack's signed
    routes."""
    if path.startswith(_EXEMPT_PREFIX):
        return True
    return method in ("GET", "HEAD") and (path in _EXEMPT_GET or _AGENT_CARD.match(path) is not None)


def _headers(scope: Scope) -> dict[bytes, bytes]:
    # Later duplicates win; a client sending two keys gets the last one checked, never both ignored.
    return {name.lower(): value for name, value in scope.get("headers", [])}


def _presented_key(headers: dict[bytes, bytes]) -> str | None:
    authorization = headers.get(b"authorization")
    if authorization is not None:
        scheme, _, credentials = authorization.decode("latin-1").strip().partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise UnauthenticatedError(f"the Authorization header must be 'Bearer <key>'; {_HOW}")
        return credentials.strip()
    api_key = headers.get(b"x-api-key")
    if api_key is not None:
        return api_key.decode("latin-1").strip()
    return None


def _from_this_machine(scope: Scope, headers: dict[bytes, bytes]) -> bool:
    client = scope.get("client")
    if not client or client[0] not in _LOOPBACK_ADDRESSES:
        return False
    # A reverse proxy on this machine makes every caller look local; a proxied request needs a key.
    if any(name in headers for name in _PROXY_HEADERS):
        return False
    # A browser sends Origin: a page from elsewhere (or a DNS-rebinding attack) must not drive local bots.
    origin = headers.get(b"origin")
    if origin is not None:
        host = urlsplit(origin.decode("latin-1")).hostname
        return host in _LOOPBACK_HOSTS
    return True


class AuthMiddleware:
    """Authenticates each HTTP request and refuses the ones that may not go on.

    Args:
        app: The application behind it.
        keys: Verifies presented API keys.
        mode: ``keys`` or ``local`` (see :data:`AuthMode`).
        oidc: Verifies JWT bearer tokens; ``None`` (no ``[oidc]`` settings) refuses them.
    """

    def __init__(self, app: ASGIApp, *, keys: ApiKeys, mode: AuthMode, oidc: OidcVerifier | None = None) -> None:
        self.app = app
        self.keys = keys
        self.mode: AuthMode = mode
        self.oidc = oidc

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "GET")
        path: str = scope["path"]
        if is_exempt(method, path):
            await self.app(scope, receive, send)
            return
        if is_console(path):
            if self.mode == "local" and _from_this_machine(scope, _headers(scope)):
                scope.setdefault("state", {})["principal"] = LOCAL_PRINCIPAL
            await self.app(scope, receive, send)
            return
        try:
            principal = await self._principal(scope)
            bot = _BOT_PATH.match(path)
            if bot is not None:
                principal.check_bot(bot.group(1))
        except BotfactoryError as exc:
            await self._refuse(scope, receive, send, exc)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)

    async def _principal(self, scope: Scope) -> Principal:
        headers = _headers(scope)
        secret = _presented_key(headers)
        local = self.mode == "local" and _from_this_machine(scope, headers)
        if secret is not None and JWT_SHAPE.fullmatch(secret) is not None and not (local and self.oidc is None):
            if self.oidc is None:
                raise UnauthenticatedError(
                    "JWT bearer tokens are not enabled on this server; set [oidc] issuer and audience in "
                    f"botfactory.toml (see docs/authentication.md), or {_HOW}"
                )
            return await self.oidc.verify(secret)
        if secret is not None and not (local and not secret.startswith(KEY_PREFIX)):
            return await self.keys.authenticate(secret)
        # Locally, a token that is not a botfactory key is no key at all: OpenAI clients must send one ("unused").
        if local:
            return LOCAL_PRINCIPAL
        raise UnauthenticatedError(f"this endpoint needs an API key: {_HOW}")

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, exc: BotfactoryError) -> None:
        client = scope.get("client")
        if isinstance(exc, UnauthenticatedError | ForbiddenError):
            logger.info(
                "client=<%s>, path=<%s>, code=<%s> | request refused", client and client[0], scope["path"], exc.code
            )
        else:
            logger.warning("path=<%s>, code=<%s> | cannot authenticate: %s", scope["path"], exc.code, exc.message)
        headers = {"www-authenticate": "Bearer"} if isinstance(exc, UnauthenticatedError) else None
        response = JSONResponse({"error": exc.to_dict()}, status_code=exc.http_status, headers=headers)
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await response(scope, receive, send)
