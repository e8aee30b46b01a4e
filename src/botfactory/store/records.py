"""What the store hands back: one frozen dataclass per stored row.

Records are plain values, detached from the database; reading one never touches the store again.
Times are UNIX epoch seconds (``float``), ids are strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

import sqlalchemy as sa

from botfactory.messages import Role

__all__ = [
    "FinishedTurnStatus",
    "MessageRecord",
    "SessionRecord",
    "StepKind",
    "StepRecord",
    "StepStatus",
    "TurnRecord",
    "TurnStatus",
]

RowLike = sa.RowMapping | Mapping[str, Any]
"""A row by column name: SQLAlchemy's, or a plain dict from the fast SQLite path."""

TurnStatus = Literal["running", "completed", "failed", "cancelled", "interrupted", "expired"]
FinishedTurnStatus = Literal["completed", "failed", "cancelled", "interrupted", "expired"]
StepKind = Literal["model", "tool"]
StepStatus = Literal["completed", "failed"]


@dataclass(frozen=True, kw_only=True)
class SessionRecord:
    """One conversation, keyed by the channel's deterministic session id."""

    id: str
    bot: str
    user_id: str | None
    status: str
    created_at: float
    updated_at: float
    last_seq: int = 0
    """``seq`` of the session's latest message."""


@dataclass(frozen=True, kw_only=True)
class MessageRecord:
    """One message of a session; ``seq`` is its arrival order, from 1, without gaps."""

    id: str
    session_id: str
    seq: int
    role: Role
    text: str
    user_id: str | None
    turn_id: str | None
    created_at: float


@dataclass(frozen=True, kw_only=True)
class TurnRecord:
    """One run of a bot on a session's input, from ``running`` to a final status."""

    id: str
    session_id: str
    bot: str
    status: TurnStatus
    input_message_id: str | None
    reply: str | None
    error_code: str | None
    error_message: str | None
    input_tokens: int
    output_tokens: int
    started_at: float
    finished_at: float | None
    attempts: int = 0
    """How many times a worker claimed this turn (more than one after a crash or a failed attempt)."""
    cost: float = 0.0
    """Price of the turn's model calls, from the settings' price table."""


@dataclass(frozen=True, kw_only=True)
class StepRecord:
    """The recorded result of one model or tool call in a turn.

    ``position`` is the step's stable place in the turn; a resumed turn replays recorded steps
    by position instead of running them again. ``input`` and ``output`` are JSON values.
    """

    turn_id: str
    position: int
    agent_path: str
    kind: StepKind
    name: str
    input: Any
    output: Any
    status: StepStatus
    started_at: float
    finished_at: float | None


def session_from_row(row: RowLike) -> SessionRecord:
    return SessionRecord(**{name: row[name] for name in _SESSION_FIELDS})


def message_from_row(row: RowLike) -> MessageRecord:
    return MessageRecord(**{name: row[name] for name in _MESSAGE_FIELDS})


def turn_from_row(row: RowLike) -> TurnRecord:
    return TurnRecord(**{name: row[name] for name in _TURN_FIELDS})


def step_from_row(row: RowLike) -> StepRecord:
    return StepRecord(**{name: row[name] for name in _STEP_FIELDS})


_SESSION_FIELDS = tuple(f.name for f in fields(SessionRecord))
_MESSAGE_FIELDS = tuple(f.name for f in fields(MessageRecord))
_TURN_FIELDS = tuple(f.name for f in fields(TurnRecord))
_STEP_FIELDS = tuple(f.name for f in fields(StepRecord))
