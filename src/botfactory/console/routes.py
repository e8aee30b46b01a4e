"""The console's routes, mounted by the server at ``/console`` (``/`` redirects there)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from botfactory.console._alerts import alert_routes
from botfactory.console._bots import bot_routes
from botfactory.console._chat import chat_routes
from botfactory.console._core import PREFIX, ConsolePlatform, ConsoleState, Viewer
from botfactory.console._costs import cost_routes
from botfactory.console._login import login_routes
from botfactory.console._operate import operate_routes
from botfactory.console._sessions import session_routes
from botfactory.console._tokens import derive_secret
from botfactory.errors import ConfigError, NotFoundError
from botfactory.identity import load_master_key

__all__ = ["console_routes", "console_secret"]

logger = logging.getLogger(__name__)

_STATIC: Final = Path(__file__).parent / "static"


def console_secret(platform: ConsolePlatform) -> bytes:
    """The key that signs console logins: derived from the vault's master key when there is one (logins survive a
    restart and work on every ``serve`` process sharing the key), else random (logins end at restart)."""
    try:
        return derive_secret(load_master_key(platform.settings, create=False).key)
    except ConfigError as exc:
        logger.warning("console=<random secret> | console logins end when this process stops: %s", exc.message)
        return derive_secret(None)


def console_routes(
    platform: ConsolePlatform, *, secret: bytes | None = None, clock: Callable[[], float] = time.time
) -> list[BaseRoute]:
    """Every console route: pages under ``/console``, its static files, and ``/`` redirecting to it.

    Mount them after the API's routes. The server's authentication middleware lets console paths through (the
    console checks its own login cookie) and marks local requests in ``local`` mode, which need no login.

    Args:
        platform: The running services.
        secret: Signs login cookies; default :func:`console_secret`.
        clock: Epoch seconds, for login expiry and the costs page's days; tests inject one.
    """
    state = ConsoleState(platform, secret=secret if secret is not None else console_secret(platform), clock=clock)

    async def home(request: Request) -> Response:
        return RedirectResponse(f"{PREFIX}/sessions", status_code=303)

    async def not_found(request: Request, viewer: Viewer) -> Response:
        raise NotFoundError(f"the console has no page {request.url.path!r}; use the menu on the left")

    return [
        Route("/", home, methods=["GET"]),
        Route(PREFIX, home, methods=["GET"]),
        Route(f"{PREFIX}/", home, methods=["GET"]),
        Mount(f"{PREFIX}/static", app=StaticFiles(directory=_STATIC), name="console-static"),
        *login_routes(state),
        *session_routes(state),
        *chat_routes(state),
        *operate_routes(state),
        *alert_routes(state),
        *bot_routes(state),
        *cost_routes(state),
        Route(PREFIX + "/{rest:path}", state.guard(not_found), methods=["GET", "POST"]),
    ]
