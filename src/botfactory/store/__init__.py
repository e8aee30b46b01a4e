"""Persistence for botfactory on SQLite or PostgreSQL: sessions, messages, turns and their steps.

Open a :class:`Store` with a database URL; it applies pending migrations unless told not to::

    async with await Store.open("sqlite:///data/botfactory.db") as store:
        session = await store.ensure_session("team:channel:thread", bot="helper")

The schema lives in :mod:`botfactory.store.schema`, migrations in :mod:`botfactory.store.migrate`.
"""

from __future__ import annotations

from botfactory.store.alert_signals import FAILED_OUTCOMES, RAN_OUTCOMES, AlertSignals, FirstToken, ToolCalls
from botfactory.store.alerts import AlertRecord, AlertStatus, AlertStore, NewAlert, ThrottleRecord, ThrottleStore
from botfactory.store.api_keys import ApiKeyRecord, ApiKeyStore
from botfactory.store.approvals import ApprovalRecord, ApprovalStatus, ApprovalStore, NewApproval
from botfactory.store.audit import AuditQuery, AuditRecord, AuditStore
from botfactory.store.base import Clock, Store
from botfactory.store.costs import COST_SCOPES, CostRow, CostScope, CostStore, day_before
from botfactory.store.engine import begin_write, create_engine, create_sync_engine, normalize_url
from botfactory.store.ids import new_id
from botfactory.store.knowledge import ChunkInput, ChunkRow, KnowledgeStats, KnowledgeStore
from botfactory.store.migrate import current_revision, head_revision, upgrade
from botfactory.store.notify import ChangeFeed, NotificationHandler
from botfactory.store.queue import CONTROL_CHANNEL, EVENTS_CHANNEL, INBOX_CHANNEL, RuntimeStore
from botfactory.store.queue_records import (
    API_CHANNEL,
    CancelKind,
    CancelResult,
    Claim,
    ClaimBatch,
    DoubleTexting,
    Enqueued,
    EventRecord,
    Heartbeat,
    Inbound,
    InboxItem,
    Lease,
    OutboxRecord,
    QueueState,
    SessionSummary,
    TurnOutcome,
    UsageDelta,
    session_state,
)
from botfactory.store.rate_limits import BucketSpec, RateBucketStore
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
from botfactory.store.secrets import EncryptedSecret, SecretRecord, SecretStore
from botfactory.store.spans import SpanRecord, SpanStore, TraceSummary
from botfactory.store.writer import BatchWriter

__all__ = [
    "API_CHANNEL",
    "CONTROL_CHANNEL",
    "COST_SCOPES",
    "EVENTS_CHANNEL",
    "FAILED_OUTCOMES",
    "INBOX_CHANNEL",
    "RAN_OUTCOMES",
    "AlertRecord",
    "AlertSignals",
    "AlertStatus",
    "AlertStore",
    "ApiKeyRecord",
    "ApiKeyStore",
    "ApprovalRecord",
    "ApprovalStatus",
    "ApprovalStore",
    "AuditQuery",
    "AuditRecord",
    "AuditStore",
    "BatchWriter",
    "BucketSpec",
    "CancelKind",
    "CancelResult",
    "ChangeFeed",
    "ChunkInput",
    "ChunkRow",
    "Claim",
    "ClaimBatch",
    "Clock",
    "CostRow",
    "CostScope",
    "CostStore",
    "DoubleTexting",
    "EncryptedSecret",
    "Enqueued",
    "EventRecord",
    "FinishedTurnStatus",
    "FirstToken",
    "Heartbeat",
    "Inbound",
    "InboxItem",
    "KnowledgeStats",
    "KnowledgeStore",
    "Lease",
    "MessageRecord",
    "NewAlert",
    "NewApproval",
    "NotificationHandler",
    "OutboxRecord",
    "QueueState",
    "RateBucketStore",
    "RuntimeStore",
    "SecretRecord",
    "SecretStore",
    "SessionRecord",
    "SessionSummary",
    "SpanRecord",
    "SpanStore",
    "StepKind",
    "StepRecord",
    "StepStatus",
    "Store",
    "ThrottleRecord",
    "ThrottleStore",
    "ToolCalls",
    "TraceSummary",
    "TurnOutcome",
    "TurnRecord",
    "TurnStatus",
    "UsageDelta",
    "begin_write",
    "create_engine",
    "create_sync_engine",
    "current_revision",
    "day_before",
    "head_revision",
    "new_id",
    "normalize_url",
    "session_state",
    "upgrade",
]
