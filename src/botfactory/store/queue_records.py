"""Values the runtime's queue operations take and return (see :mod:`botfactory.store.queue`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from botfactory.store.records import MessageRecord, StepRecord, TurnRecord

__all__ = [
    "API_CHANNEL",
    "CancelKind",
    "CancelResult",
    "Claim",
    "ClaimBatch",
    "DoubleTexting",
    "Enqueued",
    "EventRecord",
    "Heartbeat",
    "Inbound",
    "InboxItem",
    "Lease",
    "OutboxRecord",
    "QueueState",
    "SessionSummary",
    "TurnOutcome",
    "UsageDelta",
    "session_state",
]

API_CHANNEL = "api"
"""Replies to the HTTP API need no delivery: callers read them from the session or its event stream."""

DoubleTexting = Literal["enqueue", "coalesce", "interrupt", "reject"]
CancelKind = Literal["cancel", "interrupt"]


@dataclass(frozen=True, kw_only=True)
class Inbound:
    """A message a channel hands to the inbox.

    Attributes:
        dedup_key: The channel's id for this delivery (Slack ``event_id``, a client's key); a second enqueue
            with the same key for the same bot is the same message and creates no work.
        channel: Where the reply goes (``api``, ``slack``, ...); ``reply_to`` is the channel's target.
        trace_context: W3C trace context (``traceparent``, ``tracestate``) to continue the trace from.
    """

    session_id: str
    bot: str
    text: str
    user_id: str | None = None
    dedup_key: str | None = None
    channel: str = API_CHANNEL
    reply_to: dict[str, Any] | None = None
    trace_context: dict[str, str] | None = None


@dataclass(frozen=True, kw_only=True)
class Enqueued:
    """The stored message; ``duplicate`` when the dedup key had been seen (and nothing was written)."""

    message_id: str
    session_id: str
    seq: int
    duplicate: bool
    interrupted_turn_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class InboxItem:
    """One inbound message and where it is in its life: pending, running, done, dead or cancelled."""

    message_id: str
    session_id: str
    bot: str
    seq: int
    text: str
    user_id: str | None
    dedup_key: str | None
    status: str
    turn_id: str | None
    channel: str
    reply_to: dict[str, Any] | None
    trace_context: dict[str, str] | None
    error: str | None
    enqueued_at: float
    finished_at: float | None


@dataclass(frozen=True, kw_only=True)
class Lease:
    """A worker's claim on a session; every write it makes is fenced by the token."""

    session_id: str
    token: str


@dataclass(frozen=True, kw_only=True)
class Claim:
    """A session claimed by a worker, with everything its turn needs.

    Attributes:
        turn: The turn to run: new, or resumed after a crash (``resumed``), then ``steps`` holds what it
            already recorded.
        inputs: The messages the turn answers, in arrival order (several when the bot coalesces).
        history: Earlier answered messages and replies of the session, oldest first.
    """

    lease: Lease
    bot: str
    user_id: str | None
    turn: TurnRecord
    inputs: tuple[InboxItem, ...]
    history: tuple[MessageRecord, ...]
    steps: tuple[StepRecord, ...] = ()
    resumed: bool = False
    enqueued_at: float = 0.0

    @property
    def session_id(self) -> str:
        """The claimed session."""
        return self.lease.session_id


@dataclass(frozen=True, kw_only=True)
class ClaimBatch:
    """The result of one claim: the sessions to run and the turns the claim closed on the way."""

    claims: tuple[Claim, ...]
    closed: tuple[TurnRecord, ...] = ()
    """Turns that ended without running: dead-lettered, expired, or cancelled while no worker held them."""


@dataclass(frozen=True, kw_only=True)
class Heartbeat:
    """What a lease renewal found: leases another worker took over, and cancellations asked for."""

    lost: frozenset[str] = frozenset()
    cancel: dict[str, CancelKind] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class UsageDelta:
    """Tokens and spend of one model call, added to the bot's, user's, session's and model alias's counters.

    ``user_id`` or ``session_id`` ``None``: the call is not counted for a user or a session (a call made through
    the inference endpoint without them).
    """

    bot: str
    user_id: str | None
    session_id: str | None
    day: str
    tokens: int
    cost: float
    model: str | None = None
    """The model alias called; ``None``: not counted per model."""


@dataclass(frozen=True, kw_only=True)
class TurnOutcome:
    """How a turn ended.

    Attributes:
        status: ``completed``, ``failed``, ``cancelled``, ``interrupted`` or ``expired``.
        reply: Text for the user; goes to the outbox in the same transaction (unless stale).
        stale_when_newer: Do not deliver the reply if newer messages wait (``coalesce`` and ``interrupt``).
    """

    status: str
    reply: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    stale_when_newer: bool = False


@dataclass(frozen=True, kw_only=True)
class CancelResult:
    """What a cancel request did."""

    session_id: str
    turn_id: str | None
    running: bool
    """The turn is held by a worker, which stops it (within a heartbeat on another host)."""
    cancelled_messages: int


@dataclass(frozen=True, kw_only=True)
class OutboxRecord:
    """A reply waiting for (or done with) delivery to its channel."""

    id: str
    turn_id: str
    session_id: str
    bot: str
    channel: str
    reply_to: dict[str, Any] | None
    text: str
    status: str
    attempts: int
    next_attempt_at: float | None
    error: str | None
    created_at: float
    delivered_at: float | None


@dataclass(frozen=True, kw_only=True)
class EventRecord:
    """One stored turn event, for the session's event stream."""

    id: int
    session_id: str
    turn_id: str | None
    type: str
    data: dict[str, Any]
    created_at: float


@dataclass(frozen=True, kw_only=True)
class QueueState:
    """A session's place in the queue."""

    pending: int
    turn_id: str | None
    leased: bool
    ready_at: float | None
    cancel: str | None


@dataclass(frozen=True, kw_only=True)
class SessionSummary:
    """One line of a session listing.

    Attributes:
        state: ``running`` (a worker holds its turn), ``waiting`` (work queued or backing off) or ``idle``.
    """

    id: str
    bot: str
    user_id: str | None
    state: str
    pending: int
    turn_id: str | None
    created_at: float
    updated_at: float


def session_state(*, turn_id: str | None, pending: int, leased: bool) -> str:
    """``running`` (a worker holds its turn), ``waiting`` (work queued or backing off) or ``idle``."""
    if turn_id is not None and leased:
        return "running"
    if turn_id is not None or pending > 0:
        return "waiting"
    return "idle"
