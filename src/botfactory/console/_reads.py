"""Reads the store has no method for yet: every step of a session's turns in one query.

A session page shows every turn's waterfall; reading steps turn by turn would cost a query per turn. This belongs
in :class:`botfactory.store.Store` (``list_steps`` for a whole session); until it is there, it lives here, read-only.
"""

from __future__ import annotations

import sqlalchemy as sa

from botfactory.errors import StoreError
from botfactory.store import StepRecord, Store
from botfactory.store import schema as tables

__all__ = ["MAX_STEPS", "steps_of_session"]

MAX_STEPS = 20_000
"""The most steps one page reads (100 turns of a busy bot use a few thousand)."""


async def steps_of_session(store: Store, session_id: str, *, since: float | None = None) -> list[StepRecord]:
    """Every recorded step of the session's turns (started at or after ``since``), by turn then position.

    Raises:
        StoreError: the database cannot be read.
    """
    steps, turns = tables.steps, tables.turns
    statement = (
        sa.select(steps)
        .join(turns, turns.c.id == steps.c.turn_id)
        .where(turns.c.session_id == session_id)
        .order_by(steps.c.turn_id, steps.c.position)
        .limit(MAX_STEPS)
    )
    if since is not None:
        statement = statement.where(turns.c.started_at >= since)
    try:
        async with store.engine.connect() as connection:
            rows = (await connection.execute(statement)).mappings().all()
    except sa.exc.DBAPIError as exc:
        raise StoreError(f"cannot read the session's steps ({type(exc.orig).__name__}); is the database up?") from exc
    return [
        StepRecord(
            turn_id=str(row["turn_id"]),
            position=int(row["position"]),
            agent_path=str(row["agent_path"]),
            kind=row["kind"],
            name=str(row["name"]),
            input=row["input"],
            output=row["output"],
            status=row["status"],
            started_at=float(row["started_at"]),
            finished_at=None if row["finished_at"] is None else float(row["finished_at"]),
        )
        for row in rows
    ]
