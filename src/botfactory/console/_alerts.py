"""The alerts page: open and resolved alerts (resolve one, release a quarantined session), and the tools an alert
throttled (end a throttle).

Who sees what: a login for every bot sees every alert and throttle. A login limited to one bot sees the alerts
about its bot (``ttft``, ``spend``) and about its bot's sessions (``safety``); alerts about a tool
(``tool_errors``) and throttles concern every bot that uses the tool, so only a login for every bot sees them.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Final

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from botfactory.console._core import PREFIX, ConsoleState, Viewer, form
from botfactory.console._sessions import safe_next
from botfactory.errors import ForbiddenError, InvalidInputError, NotFoundError
from botfactory.store import AlertRecord, AlertStatus, SessionRecord, ThrottleStore

__all__ = ["alert_routes"]

logger = logging.getLogger(__name__)

_UUID: Final = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_STATUSES: Final[dict[str, AlertStatus | None]] = {"open": "open", "resolved": "resolved", "all": None}
_LIST_LIMIT: Final = 200
_SCAN_LIMIT: Final = 1000  # a bot-limited login filters a longer list down to its bot's alerts
_MAX_LOOKUPS: Final = 200  # sessions looked up for one page (safety alerts name a session each)
_BOT_SUBJECTS: Final = frozenset({"ttft", "spend"})  # kinds whose subject is a bot
_MAX_TOOL: Final = 256


def alert_bot(alert: AlertRecord, sessions: dict[str, SessionRecord]) -> str | None:
    """The bot an alert is about: its subject (``ttft``, ``spend``), its session's bot (``safety``), or the bot its
    data names; ``None`` for an alert about something every bot shares, like a tool."""
    if alert.kind in _BOT_SUBJECTS:
        return alert.subject
    if alert.kind == "safety" and alert.subject in sessions:
        return sessions[alert.subject].bot
    named = alert.data.get("bot")
    return named if isinstance(named, str) else None


def _visible(viewer: Viewer, alert: AlertRecord, sessions: dict[str, SessionRecord]) -> bool:
    if viewer.principal.bot is None:
        return True
    bot = alert_bot(alert, sessions)
    return bot is not None and viewer.allows(bot)


async def _sessions_of(state: ConsoleState, alerts: list[AlertRecord]) -> dict[str, SessionRecord]:
    """The sessions the ``safety`` alerts name (gone ones left out), to know their bot and whether they are
    still quarantined."""
    wanted = list(dict.fromkeys(a.subject for a in alerts if a.kind == "safety"))[:_MAX_LOOKUPS]
    store = state.platform.store

    async def one(session_id: str) -> SessionRecord | None:
        try:
            return await store.get_session(session_id)
        except NotFoundError:
            return None

    found = await asyncio.gather(*(one(session_id) for session_id in wanted))
    return {record.id: record for record in found if record is not None}


def alert_routes(state: ConsoleState) -> list[BaseRoute]:
    """The alerts page's routes."""
    runtime = state.runtime
    throttles = ThrottleStore(state.platform.store.engine)

    async def alerts(request: Request, viewer: Viewer) -> Response:
        status = request.query_params.get("status") or "open"
        if status not in _STATUSES:
            raise InvalidInputError(f"status must be one of {', '.join(_STATUSES)}")
        scoped = viewer.principal.bot is not None
        found = await runtime.list_alerts(status=_STATUSES[status], limit=_SCAN_LIMIT if scoped else _LIST_LIMIT)
        sessions = await _sessions_of(state, found)
        shown = [a for a in found if _visible(viewer, a, sessions)][:_LIST_LIMIT]
        shown.sort(key=lambda a: a.status != "open")  # open first; newest first within each (a stable sort)
        now = state.clock()
        active = [] if scoped else [t for t in await throttles.list() if t.until > now]
        return state.render(
            "alerts.html",
            viewer=viewer,
            page="alerts",
            alerts=shown,
            throttles=active,
            scoped=scoped,
            quarantined={s.id for s in sessions.values() if s.status == "quarantined"},
            shown_status=status,
            statuses=list(_STATUSES),
            now=now,
        )

    async def resolve(request: Request, viewer: Viewer) -> Response:
        alert_id: str = request.path_params["alert_id"]
        unknown = NotFoundError(f"no alert {alert_id[:40]!r}; pick one from the alerts list")
        if not _UUID.match(alert_id):
            raise unknown
        alert = await runtime.alert_store.get(alert_id)
        if not _visible(viewer, alert, await _sessions_of(state, [alert])):
            raise unknown
        resolved = await runtime.resolve_alert(alert.id)
        logger.info(
            "alert_id=<%s>, rule=<%s>, by=<%s> | alert resolved in the console", resolved.id, alert.rule, viewer.name
        )
        return RedirectResponse(safe_next((await form(request)).get("next"), f"{PREFIX}/alerts"), status_code=303)

    async def end_throttle(request: Request, viewer: Viewer) -> Response:
        tool: str = request.path_params["tool"]
        if not (0 < len(tool) <= _MAX_TOOL and tool.isprintable()):
            raise NotFoundError("no throttle on that tool; pick one from the alerts page")
        if viewer.principal.bot is not None:
            raise ForbiddenError(
                "a throttle stops the tool for every bot; log in with a key not limited to one bot to end it"
            )
        if not await throttles.release(tool):
            raise NotFoundError(f"no throttle on tool {tool!r}; it may have been ended already")
        logger.info("tool=<%s>, by=<%s> | tool throttle ended in the console", tool, viewer.name)
        return RedirectResponse(f"{PREFIX}/alerts", status_code=303)

    return [
        Route(f"{PREFIX}/alerts", state.guard(alerts), methods=["GET"]),
        Route(PREFIX + "/alerts/{alert_id}/resolve", state.guard(resolve), methods=["POST"]),
        Route(PREFIX + "/alerts/throttles/{tool:path}/end", state.guard(end_throttle), methods=["POST"]),
    ]
