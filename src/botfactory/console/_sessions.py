"""Sessions: the list (live and recent, filtered), one session's conversation with each turn's waterfall, cancel,
release from a quarantine, and a session's events as server-sent events (the chat page follows them)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from botfactory.console._core import PREFIX, ConsoleState, Viewer, form
from botfactory.console._waterfall import Waterfall, from_spans, from_steps, spans_by_turn
from botfactory.errors import BotfactoryError, InvalidInputError, SessionNotFoundError
from botfactory.runtime import SessionView
from botfactory.store import (
    AuditQuery,
    AuditRecord,
    AuditStore,
    EventRecord,
    MessageRecord,
    OutboxRecord,
    SpanRecord,
    SpanStore,
    StepRecord,
    TurnRecord,
)

__all__ = ["TurnView", "load_turns", "safe_next", "session_id_of", "session_routes"]

logger = logging.getLogger(__name__)

STATES: Final = ("running", "waiting", "idle", "quarantined")
_MAX_ID: Final = 256
_LIST_LIMIT: Final = 100
_SCAN_LIMIT: Final = 1000
_MAX_TURNS: Final = 1000
_KEEPALIVE_S: Final = 15.0
_AUDIT_ROWS: Final = 1000


@dataclass(frozen=True, kw_only=True)
class TurnView:
    """One turn as the session page shows it: what it answered, what it cost, its reply and its waterfall."""

    turn: TurnRecord
    inputs: list[MessageRecord]
    delivery: OutboxRecord | None
    waterfall: Waterfall

    @property
    def duration_s(self) -> float | None:
        """Wall time from start to finish; ``None`` while running."""
        return None if self.turn.finished_at is None else self.turn.finished_at - self.turn.started_at


def session_id_of(request: Request) -> str:
    """The ``{session_id}`` of the path, checked like the API checks it.

    Raises:
        InvalidInputError: empty, too long or not printable.
    """
    session_id: str = request.path_params["session_id"]
    if not (0 < len(session_id) <= _MAX_ID and session_id.isprintable()):
        raise InvalidInputError(f"a session id is 1 to {_MAX_ID} printable characters")
    return session_id


def safe_next(value: str | None, default: str) -> str:
    """Where to go after a form: only a console path, so a crafted link cannot send people elsewhere."""
    if value and value.startswith(PREFIX + "/") and not value.startswith("//") and "\\" not in value:
        return value
    return default


async def load_turns(state: ConsoleState, view: SessionView, *, limit: int) -> tuple[list[TurnView], int]:
    """The session's last ``limit`` turns with their waterfalls, and how many earlier ones were left out.

    One query per table whatever the number of turns: spans, steps and audit rows of the whole session, grouped
    by turn here.
    """
    turns = view.turns[-limit:]
    hidden = len(view.turns) - len(turns)
    session_id = view.session.id
    # Spans of a turn start a little before it (the inbox wait), so a cut-off page reads a margin more.
    since = turns[0].started_at - 3600.0 if hidden and turns else None
    engine = state.platform.store.engine
    spans, steps, audits = await asyncio.gather(
        SpanStore(engine).for_session(session_id, since=since),
        state.platform.store.list_session_steps(session_id, since=since),
        AuditStore(engine).list(AuditQuery(session_id=session_id, since=since, limit=_AUDIT_ROWS)),
    )
    span_groups = spans_by_turn(spans)
    step_groups: dict[str, list[StepRecord]] = {}
    for step in steps:
        step_groups.setdefault(step.turn_id, []).append(step)
    audit_groups: dict[str, list[AuditRecord]] = {}
    for audit in audits:
        if audit.turn_id is not None:
            audit_groups.setdefault(audit.turn_id, []).append(audit)
    messages = {m.id: m for m in view.messages}
    inputs: dict[str, list[MessageRecord]] = {}
    for item in view.inbox:
        if item.turn_id is not None and item.message_id in messages:
            inputs.setdefault(item.turn_id, []).append(messages[item.message_id])
    deliveries = {reply.turn_id: reply for reply in view.outbox}
    shown = []
    for turn in turns:
        turn_audits = audit_groups.get(turn.id, [])
        turn_spans = span_groups.get(turn.id, [])
        turn_steps = step_groups.get(turn.id, [])
        waterfall = (
            from_spans(turn_spans, turn_audits)
            if _spans_complete(turn_spans, turn_steps)
            else from_steps(turn_steps, turn_audits)
        )
        shown.append(
            TurnView(
                turn=turn,
                inputs=sorted(inputs.get(turn.id, []), key=lambda m: m.seq),
                delivery=deliveries.get(turn.id),
                waterfall=waterfall,
            )
        )
    return shown, hidden


def _spans_complete(spans: list[SpanRecord], steps: list[StepRecord]) -> bool:
    """Whether the stored spans show every recorded call: spans are written in batches after the fact, and a
    resumed turn replays its recorded steps without new spans, so the steps are the fallback."""
    calls = sum(1 for s in spans if s.attributes.get("gen_ai.operation.name") in ("chat", "execute_tool"))
    return bool(spans) and calls >= len(steps)


def session_routes(state: ConsoleState) -> list[BaseRoute]:
    """The sessions pages' routes."""
    runtime = state.runtime

    async def sessions(request: Request, viewer: Viewer) -> Response:
        query = request.query_params
        bot = query.get("bot") or viewer.principal.bot or None
        user = query.get("user") or None
        status = query.get("status") or None
        active = query.get("active") in ("1", "true", "on")
        if status is not None and status not in STATES:
            raise InvalidInputError(f"status must be one of {', '.join(STATES)}")
        if bot is not None:
            viewer.principal.check_bot(bot)
        found = await runtime.list_sessions(active=active, bot=bot, limit=_SCAN_LIMIT)
        shown = [s for s in found if (user is None or s.user_id == user) and (status is None or s.state == status)][
            :_LIST_LIMIT
        ]
        return state.render(
            "sessions.html",
            viewer=viewer,
            page="sessions",
            sessions=shown,
            bots=[b.name for b in runtime.bots if viewer.allows(b.name)],
            states=STATES,
            filters={"bot": bot or "", "user": user or "", "status": status or "", "active": active},
            live=any(s.state in ("running", "waiting") for s in shown),
        )

    async def session(request: Request, viewer: Viewer) -> Response:
        session_id = session_id_of(request)
        limit_text = request.query_params.get("turns", "100")
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= _MAX_TURNS:
            raise InvalidInputError(f"turns must be a whole number from 1 to {_MAX_TURNS}")
        view = await runtime.session(session_id)
        if not viewer.allows(view.session.bot):
            raise SessionNotFoundError(f"no session {session_id!r}; pick one from the sessions list")
        turns, hidden = await load_turns(state, view, limit=int(limit_text))
        answered = {m.id for t in turns for m in t.inputs}
        queued = [i for i in view.inbox if i.status == "pending" and i.message_id not in answered]
        summary = view.to_dict()
        return state.render(
            "session.html",
            viewer=viewer,
            page="sessions",
            view=view,
            session_state=summary["state"],
            turns=turns,
            hidden=hidden,
            queued=queued,
            tokens=sum(t.input_tokens + t.output_tokens for t in view.turns),
            cost=sum(t.cost for t in view.turns),
        )

    async def cancel(request: Request, viewer: Viewer) -> Response:
        session_id = session_id_of(request)
        record = await runtime.store.get_session(session_id)
        if not viewer.allows(record.bot):
            raise SessionNotFoundError(f"no session {session_id!r}; pick one from the sessions list")
        result = await runtime.cancel(session_id)
        logger.info(
            "session_id=<%s>, by=<%s>, running=<%s> | session cancelled from the console",
            session_id,
            viewer.name,
            result.running,
        )
        target = safe_next((await form(request)).get("next"), f"{PREFIX}/sessions/{session_id}")
        return RedirectResponse(target, status_code=303)

    async def release(request: Request, viewer: Viewer) -> Response:
        session_id = session_id_of(request)
        record = await runtime.store.get_session(session_id)
        if not viewer.allows(record.bot):
            raise SessionNotFoundError(f"no session {session_id!r}; pick one from the sessions list")
        was_quarantined = await runtime.release_session(session_id)
        logger.info(
            "session_id=<%s>, by=<%s>, was_quarantined=<%s> | session released from the console",
            session_id,
            viewer.name,
            was_quarantined,
        )
        target = safe_next((await form(request)).get("next"), f"{PREFIX}/sessions/{session_id}")
        return RedirectResponse(target, status_code=303)

    async def events(request: Request, viewer: Viewer) -> Response:
        session_id = session_id_of(request)
        after_text = request.headers.get("last-event-id") or request.query_params.get("after", "0")
        if not after_text.isdigit() or len(after_text) > 18:
            raise InvalidInputError("after must be an event id (a whole number, 0 or more)")
        record = await runtime.store.get_session(session_id)
        if not viewer.allows(record.bot):
            raise SessionNotFoundError(f"no session {session_id!r}; pick one from the sessions list")
        return StreamingResponse(
            _event_stream(state, session_id, after=int(after_text)),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )

    return [
        Route(f"{PREFIX}/sessions", state.guard(sessions), methods=["GET"]),
        Route(PREFIX + "/sessions/{session_id:path}/cancel", state.guard(cancel), methods=["POST"]),
        Route(PREFIX + "/sessions/{session_id:path}/release", state.guard(release), methods=["POST"]),
        Route(PREFIX + "/sessions/{session_id:path}/events", state.guard(events), methods=["GET"]),
        Route(PREFIX + "/sessions/{session_id:path}", state.guard(session), methods=["GET"]),
    ]


async def _event_stream(state: ConsoleState, session_id: str, *, after: int) -> AsyncIterator[str]:
    """The session's events after ``after`` as server-sent events, following new ones, with keep-alives."""
    try:
        async for event in state.runtime.watch(session_id, after=after, follow=True, tick_s=_KEEPALIVE_S):
            yield ": ping\n\n" if event is None else _sse(event)
    except BotfactoryError as exc:
        yield f"event: error\ndata: {json.dumps(exc.to_dict())}\n\n"


def _sse(event: EventRecord) -> str:
    data = {"type": event.type, "turn_id": event.turn_id, "created_at": event.created_at, **event.data}
    # Unnamed events: an EventSource's ``onmessage`` gets every type; the type is in the data.
    return f"id: {event.id}\ndata: {json.dumps(data, default=str)}\n\n"
