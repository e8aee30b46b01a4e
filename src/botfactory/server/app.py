"""The ASGI application: health, the channels' routes, and one place that turns errors into JSON."""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from botfactory.channels import http_routes, slack_routes
from botfactory.errors import BotfactoryError
from botfactory.server.platform import Platform

__all__ = ["create_app"]

logger = logging.getLogger(__name__)


def create_app(platform: Platform) -> Starlette:
    """Build the app serving ``platform``. The caller owns the platform's lifecycle."""

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "bots": [bot.name for bot in platform.bots]})

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

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            *http_routes(platform.runtime),
            *(slack_routes(platform.runtime, platform.slack) if platform.slack is not None else []),
        ],
        exception_handlers={
            BotfactoryError: on_botfactory_error,
            HTTPException: on_http_error,
            Exception: on_unexpected,
        },
    )
