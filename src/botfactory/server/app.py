"""The ASGI application: health, the channels' routes, and one place that turns errors into JSON."""

from __future__ import annotations

import logging
from importlib.metadata import version as _version

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from botfactory.channels import (
    a2a_available,
    a2a_routes,
    agentcore_routes,
    alerts_routes,
    approvals_routes,
    audit_routes,
    costs_routes,
    http_routes,
    mcp_routes,
    metrics_routes,
    openai_routes,
    slack_routes,
)
from botfactory.console import PREFIX as CONSOLE_PREFIX
from botfactory.console import console_routes
from botfactory.errors import BotfactoryError
from botfactory.observability import TracingMiddleware
from botfactory.server.auth import AuthMiddleware, AuthMode
from botfactory.server.openapi import TITLE, api_operations, openapi_document
from botfactory.server.platform import Platform
from botfactory.store import CostStore

__all__ = ["create_app", "create_metrics_app"]

logger = logging.getLogger(__name__)


def create_app(platform: Platform, *, auth: AuthMode = "local", agentcore_only: bool = False) -> Starlette:
    """Build the app serving ``platform``. The caller owns the platform's lifecycle.

    Args:
        platform: The running services.
        auth: ``keys`` requires an API key on every route but health and Slack (``botfactory serve``); ``local``
            lets requests from this machine in without one (``botfactory up``, in-process use and tests). Serve
            anything other machines can reach with ``keys``.
        agentcore_only: Serve only the AgentCore contract (``/invocations``, ``/ping``), for ``agentcore_port``.
    """

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "bots": [bot.name for bot in platform.bots]})

    document = openapi_document(api_operations(platform), title=TITLE, version=_version("botfactory"))

    async def openapi(request: Request) -> Response:
        return JSONResponse(document)

    async def on_botfactory_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, BotfactoryError)
        if exc.http_status >= 500:
            logger.warning("path=<%s>, code=<%s> | request failed: %s", request.url.path, exc.code, exc.message)
        return JSONResponse({"error": exc.to_dict()}, status_code=exc.http_status)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse({"error": {"code": code, "message": str(exc.detail)}}, status_code=exc.status_code)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        logger.exception("path=<%s> | unexpected error", request.url.path)
        return JSONResponse(
            {"error": {"code": "internal", "message": "internal error; see the server log"}}, status_code=500
        )

    contract = agentcore_routes(platform.runtime, busy=lambda: bool(platform.worker and platform.worker.running))
    everything = [
        # Starlette tries routes in order: the ingress that carries traffic (Slack, OpenAI-compatible, the
        # AgentCore contract, messages) comes first, the operator's reads after.
        *(slack_routes(platform.runtime, platform.slack) if platform.slack is not None else []),
        *openai_routes(platform.runtime, platform.inference, metrics=platform.metrics),
        *contract,
        *http_routes(platform.runtime),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        *approvals_routes(platform.runtime),
        *alerts_routes(platform.runtime),
        *(audit_routes(platform.engine.gateway.audit) if platform.engine.gateway.audit is not None else []),
        *metrics_routes(platform.metrics),
        *costs_routes(CostStore(platform.store.engine)),
        *mcp_routes(platform.bots, platform.engine.gateway, max_request_bytes=platform.settings.max_request_bytes),
        *(a2a_routes(platform.runtime) if a2a_available() else []),
        # Last: the web console's pages under /console (and / redirecting there); it checks its own login cookie.
        *(console_routes(platform) if platform.settings.console.enabled else []),
    ]
    return Starlette(
        routes=contract if agentcore_only else everything,
        exception_handlers={
            BotfactoryError: on_botfactory_error,
            HTTPException: on_http_error,
            Exception: on_unexpected,
        },
        middleware=[
            # Outermost: every request is a span continuing the caller's traceparent; channels store that context
            # with the inbox message, and the turn continues it (see botfactory.observability).
            Middleware(
                TracingMiddleware,
                excluded_paths=frozenset({"/healthz", "/metrics", "/"}),
                untraced_reads=(CONSOLE_PREFIX + "/",),
            ),
            Middleware(AuthMiddleware, keys=platform.api_keys, mode=auth, oidc=platform.oidc),
        ],
    )


def create_metrics_app(platform: Platform) -> Starlette:
    """Only ``GET /metrics`` (and ``/healthz``), API key required: what ``botfactory worker --metrics-port`` serves,
    since a worker serves no other HTTP and its turn and token series live in its own process."""

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "worker": platform.worker.name if platform.worker else None})

    async def on_botfactory_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, BotfactoryError)
        return JSONResponse({"error": exc.to_dict()}, status_code=exc.http_status)

    return Starlette(
        routes=[Route("/healthz", healthz, methods=["GET"]), *metrics_routes(platform.metrics)],
        exception_handlers={BotfactoryError: on_botfactory_error},
        middleware=[Middleware(AuthMiddleware, keys=platform.api_keys, mode="keys", oidc=platform.oidc)],
    )
