"""``/v1/alerts``: the alerts the rules raised, resolving them, and releasing a quarantined session.

Alerts are about the whole platform (bots, tools, sessions of every bot), so a key limited to one bot may not read
or resolve them, nor release sessions: use a local request or a key for every bot.
"""

from __future__ import annotations

import re
from typing import Final, cast

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from botfactory.channels._access import check_session_visible, key_bot
from botfactory.errors import ForbiddenError, InvalidFieldError
from botfactory.runtime import Runtime
from botfactory.store import AlertStatus

__all__ = ["alerts_routes"]

_ID: Final = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_LIMIT: Final = re.compile(r"^[0-9]{1,4}$")
_STATUSES: Final = ("open", "resolved", "all")
_KINDS: Final = ("ttft", "spend", "tool_errors", "safety")
_MAX_SESSION_CHARS: Final = 256


def _operator_only(request: Request, what: str) -> None:
    bot = key_bot(request)
    if bot is not None:
        raise ForbiddenError(
            f"this key may only use bot {bot!r}; {what} needs a key for every bot (`botfactory keys create`)"
        )


def alerts_routes(runtime: Runtime) -> list[BaseRoute]:
    """The alerts API's routes, and the session release route."""

    async def list_alerts(request: Request) -> Response:
        _operator_only(request, "reading alerts")
        params = request.query_params
        status = params.get("status", "open")
        if status not in _STATUSES:
            raise InvalidFieldError(f"status must be one of {', '.join(_STATUSES)}", param="status")
        kind = params.get("kind")
        if kind is not None and kind not in _KINDS:
            raise InvalidFieldError(f"kind must be one of {', '.join(_KINDS)}", param="kind")
        limit = params.get("limit", "100")
        if not _LIMIT.match(limit) or not 1 <= int(limit) <= 1000:
            raise InvalidFieldError(f"limit must be a whole number from 1 to 1000, not {limit[:40]!r}", param="limit")
        found = await runtime.list_alerts(
            status=None if status == "all" else cast(AlertStatus, status), kind=kind, limit=int(limit)
        )
        return JSONResponse({"alerts": [alert.to_dict() for alert in found]})

    async def resolve_alert(request: Request) -> Response:
        _operator_only(request, "resolving alerts")
        alert_id: str = request.path_params["alert_id"]
        if not _ID.match(alert_id):
            raise InvalidFieldError("the alert id must be a UUID, as `GET /v1/alerts` lists them", param="alert_id")
        return JSONResponse((await runtime.resolve_alert(alert_id)).to_dict())

    async def release_session(request: Request) -> Response:
        session_id: str = request.path_params["session_id"]
        if not (0 < len(session_id) <= _MAX_SESSION_CHARS and session_id.isprintable()):
            raise InvalidFieldError(
                f"session_id must be 1 to {_MAX_SESSION_CHARS} printable characters", param="session_id"
            )
        session = await runtime.store.get_session(session_id)
        check_session_visible(request, session_id, session.bot)
        _operator_only(request, "releasing a quarantined session")
        released = await runtime.release_session(session_id)
        return JSONResponse({"session_id": session_id, "released": released, "status": "active"})

    return [
        Route("/v1/alerts", list_alerts, methods=["GET"]),
        Route("/v1/alerts/{alert_id}/resolve", resolve_alert, methods=["POST"]),
        Route("/v1/sessions/{session_id}/release", release_session, methods=["POST"]),
    ]
