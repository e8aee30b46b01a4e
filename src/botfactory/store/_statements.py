"""Prebuilt statements for the runtime's hot path.

Building a SQLAlchemy statement and generating its cache key costs more than SQLite takes to run it. These are
built once, with named bind parameters (``b_*``), so each is compiled once per dialect and then only executed.
Parameters that appear inside SQL expressions carry their type, which PostgreSQL needs to plan them. Each is a
:class:`~botfactory.store._fast.Fast` statement: on SQLite it runs straight on the cursor.
"""

from __future__ import annotations

from typing import Final

import sqlalchemy as sa

from botfactory.store._fast import Fast
from botfactory.store.schema import inbox, messages, outbox, session_queue, sessions, steps, turn_events, turns

_B = sa.bindparam
_NOW = _B("b_now", type_=sa.Float)

NEXT_SEQ: Final = Fast(
    sa.update(sessions)
    .where(sessions.c.id == _B("b_session_id"))
    .values(last_seq=sessions.c.last_seq + 1, updated_at=_NOW)
    .returning(sessions.c.last_seq, sessions.c.bot, sessions.c.status)
)
"""Take the session's next message ``seq`` (locking its row on PostgreSQL) and read its bot and status."""

DEDUP: Final = Fast(
    sa.select(inbox.c.message_id, inbox.c.session_id, inbox.c.seq).where(
        inbox.c.bot == _B("b_bot"), inbox.c.dedup_key == _B("b_key")
    )
)
QUEUE_ROW: Final = Fast(sa.select(session_queue).where(session_queue.c.session_id == _B("b_session_id")))
QUEUE_ROW_LOCKED: Final = (
    sa.select(session_queue).where(session_queue.c.session_id == _B("b_session_id")).with_for_update()
)
QUEUE_ADD: Final = Fast(
    sa.update(session_queue)
    .where(session_queue.c.session_id == _B("b_session_id"))
    .values(
        pending=session_queue.c.pending + 1,
        ready_at=sa.func.coalesce(session_queue.c.ready_at, _NOW),
        updated_at=_NOW,
    )
)
INSERT_MESSAGE: Final = Fast(sa.insert(messages))
INSERT_INBOX: Final = Fast(sa.insert(inbox), json=("reply_to", "trace_context"))
INSERT_QUEUE: Final = Fast(sa.insert(session_queue))
INSERT_TURN: Final = Fast(sa.insert(turns))
INSERT_EVENT: Final = Fast(sa.insert(turn_events), json=("data",))
INSERT_OUTBOX: Final = Fast(sa.insert(outbox), json=("reply_to",))

QUARANTINED: Final = "quarantined"
"""``sessions.status`` of a session a safety alert stopped: its work is not claimed until it is released."""
_NOT_QUARANTINED: Final = ~sa.exists().where(
    sessions.c.id == session_queue.c.session_id, sessions.c.status == QUARANTINED
)

READY: Final = Fast(
    sa.select(session_queue)
    .where(session_queue.c.ready_at <= _NOW, _NOT_QUARANTINED)
    .order_by(session_queue.c.ready_at)
    .limit(_B("b_limit", type_=sa.Integer))
    .with_for_update(skip_locked=True)
)
"""Sessions a worker may claim now (their lease expired, or they have new work), oldest first; quarantined ones wait."""

PENDING_OF: Final = (
    sa.select(inbox, messages.c.text, messages.c.user_id)
    .join(messages, messages.c.id == inbox.c.message_id)
    .where(inbox.c.session_id.in_(_B("b_ids", expanding=True)), inbox.c.status == "pending")
    .order_by(inbox.c.session_id, inbox.c.seq)
)
START_INBOX: Final = Fast(
    sa.update(inbox).where(inbox.c.message_id == _B("b_message_id")).values(status="running", turn_id=_B("b_turn_id"))
)
LEASE_QUEUE: Final = Fast(
    sa.update(session_queue)
    .where(session_queue.c.session_id == _B("b_session_id"))
    .values(
        pending=_B("b_pending", type_=sa.Integer),
        lease_token=_B("b_token"),
        ready_at=_B("b_ready_at", type_=sa.Float),
        turn_id=_B("b_turn_id"),
        cancel=None,
        updated_at=_NOW,
    )
)

HISTORY_LIMIT: Final = 10
_SETTLED: Final = sa.or_(inbox.c.status.is_(None), inbox.c.status == "done")
HISTORY: Final = Fast(
    sa.select(messages)
    .select_from(messages.outerjoin(inbox, inbox.c.message_id == messages.c.id))
    .where(
        messages.c.session_id == _B("b_session_id"),
        sa.or_(messages.c.role == "user", messages.c.role == "assistant"),
        _SETTLED,
    )
    .order_by(messages.c.seq.desc())
    .limit(HISTORY_LIMIT)
)
"""The latest answered user messages and replies of a session, newest first."""

LEASE_TOKEN: Final = Fast(
    sa.select(session_queue.c.lease_token).where(session_queue.c.session_id == _B("b_session_id")).with_for_update()
)

FINISH_TURN: Final = Fast(
    sa.update(turns)
    .where(turns.c.id == _B("b_turn_id"), turns.c.status == "running")
    .values(
        status=_B("b_status"),
        reply=_B("b_reply"),
        error_code=_B("b_error_code"),
        error_message=_B("b_error_message"),
        input_tokens=_B("b_input_tokens", type_=sa.Integer),
        output_tokens=_B("b_output_tokens", type_=sa.Integer),
        cost=_B("b_cost", type_=sa.Float),
        finished_at=_NOW,
    )
)
ANSWER_INBOX: Final = Fast(
    sa.update(inbox)
    .where(inbox.c.turn_id == _B("b_turn_id"))
    .values(status=_B("b_status"), error=_B("b_error"), finished_at=_NOW)
)
REQUEUE_INBOX: Final = Fast(
    sa.update(inbox).where(inbox.c.turn_id == _B("b_turn_id")).values(status="pending", turn_id=None)
)

_ANSWERED = _B("b_answered", type_=sa.Integer)
_RELEASE_VALUES: Final = {
    "pending": session_queue.c.pending - _ANSWERED,
    "ready_at": sa.case((session_queue.c.pending - _ANSWERED > 0, _NOW), else_=sa.null()),
    "lease_token": None,
    "turn_id": None,
    "cancel": None,
    "updated_at": _NOW,
}
RELEASE_HELD: Final = Fast(
    sa.update(session_queue)
    .where(session_queue.c.session_id == _B("b_session_id"), session_queue.c.lease_token == _B("b_token"))
    .values(_RELEASE_VALUES)
    .returning(session_queue.c.pending)
)
"""End the holder's turn on the session: fewer pending messages, lease and turn cleared. No row: lease lost."""
RELEASE_ANY: Final = Fast(
    sa.update(session_queue)
    .where(session_queue.c.session_id == _B("b_session_id"))
    .values(_RELEASE_VALUES)
    .returning(session_queue.c.pending)
)

TURN_BY_ID: Final = sa.select(turns).where(turns.c.id == _B("b_turn_id"))
STEPS_OF: Final = sa.select(steps).where(steps.c.turn_id == _B("b_turn_id")).order_by(steps.c.position)
