"""``GET /v1/audit``: the tool gateway's audit log, newest first, filtered and paged.

A key limited to one bot sees only that bot's rows (asking for another bot's is 403). Page with ``before=<id of
the last row>``; the response's ``next`` is that id, or ``null`` on the last page.
"""

from __future__ import annotations

import math
import re
from typing import Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from botfactory.channels._access import check_bot_allowed, key_bot
from botfactory.errors import InvalidFieldError
from botfactory.observability import AuditLog
from botfactory.store import AuditQuery

__all__ = ["audit_routes"]

_ID: Final = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_LIMIT: Final = re.compile(r"^[0-9]{1,4}$")
_MAX_FILTER_CHARS: Final = 512
_FILTERS: Final = ("tool", "user", "bot", "session_id", "decision", "outcome")


def audit_routes(audit: AuditLog) -> list[BaseRoute]:
    """The audit log's route."""

    async def list_audit(request: Request) -> Response:
        query = audit_query(request)
        entries = await audit.list(query)
        last = entries[-1].id if len(entries) == query.limit else None
        return JSONResponse({"entries": [entry.to_dict() for entry in entries], "next": last})

    return [Route("/v1/audit", list_audit, methods=["GET"])]


def audit_query(request: Request) -> AuditQuery:
    """The query a request asks for, checked.

    Raises:
        InvalidFieldError: a parameter is malformed.
        ForbiddenError: the caller's key is limited to another bot than the one asked for.
    """
    params = request.query_params
    values: dict[str, str | None] = {}
    for name in _FILTERS:
        value = params.get(name)
        if value is not None and not 1 <= len(value) <= _MAX_FILTER_CHARS:
            raise InvalidFieldError(f"{name} must be 1 to {_MAX_FILTER_CHARS} characters", param=name)
        values[name] = value
    bot = values["bot"]
    if bot is not None:
        check_bot_allowed(request, bot)
    else:
        bot = key_bot(request)
    limit = params.get("limit", "100")
    if not _LIMIT.match(limit) or not 1 <= int(limit) <= 1000:
        raise InvalidFieldError(f"limit must be a whole number from 1 to 1000, not {limit[:40]!r}", param="limit")
    before = params.get("before")
    if before is not None and not _ID.match(before):
        raise InvalidFieldError("before must be the id of an audit entry (the previous page's `next`)", param="before")
    since = params.get("since")
    since_s: float | None = None
    if since is not None:
        try:
            since_s = float(since)
        except ValueError:
            since_s = math.nan
        if not math.isfinite(since_s) or since_s < 0:
            raise InvalidFieldError(f"since must be a time in epoch seconds, not {since[:40]!r}", param="since")
    return AuditQuery(
        tool=values["tool"],
        principal=values["user"],
        bot=bot,
        session_id=values["session_id"],
        decision=values["decision"],
        outcome=values["outcome"],
        since=since_s,
        before=before,
        limit=int(limit),
    )
