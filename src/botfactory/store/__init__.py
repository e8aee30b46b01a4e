"""Persistence for botfactory on SQLite or PostgreSQL: sessions, messages, turns and their steps.

Open a :class:`Store` with a database URL; it applies pending migrations unless told not to::

    async with await Store.open("sqlite:///data/botfactory.db") as store:
        session = await store.ensure_session("team:channel:thread", bot="helper")

The schema lives in :mod:`botfactory.store.schema`, migrations in :mod:`botfactory.store.migrate`.
"""

from __future__ import annotations

from botfactory.store.base import Clock, Store
from botfactory.store.engine import begin_write, create_engine, normalize_url
from botfactory.store.knowledge import ChunkInput, ChunkRow, KnowledgeStats, KnowledgeStore
from botfactory.store.migrate import current_revision, head_revision, upgrade
from botfactory.store.records import (
    FinishedTurnStatus,
    MessageRecord,
    SessionRecord,
    StepKind,
    StepRecord,
    StepStatus,
    TurnRecord,
    TurnStatus,
)

__all__ = [
    "ChunkInput",
    "ChunkRow",
    "Clock",
    "FinishedTurnStatus",
    "KnowledgeStats",
    "KnowledgeStore",
    "MessageRecord",
    "SessionRecord",
    "StepKind",
    "StepRecord",
    "StepStatus",
    "Store",
    "TurnRecord",
    "TurnStatus",
    "begin_write",
    "create_engine",
    "current_revision",
    "head_revision",
    "normalize_url",
    "upgrade",
]
