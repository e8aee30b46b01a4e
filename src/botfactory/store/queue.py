"""The runtime's durable state: inbox, session leases, step log, outbox, events, kill switches and usage.

Every method builds an operation and runs it through a :class:`BatchWriter`, so concurrent callers share
transactions. Invariants the operations keep, in one transaction each:

- A session has a ``session_queue`` row once a message was enqueued for it. ``ready_at`` is ``NULL`` when the
  session has no work; otherwise the earliest time a worker may claim it. A claim sets it to the lease's
  expiry, so a session whose worker died becomes claimable again by the same query, with no registry of
  workers. ``lease_token`` fences every write of the holder: a worker whose lease was taken over fails with
  :class:`LeaseLostError` and writes nothing.
- Messages of a session are answered in ``seq`` order, one turn at a time (``turn_id`` on the queue row).
- A turn's reply, its outbox row and the state of its input messages change in the transaction that ends it.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from botfactory.errors import (
    InvalidInputError,
    LeaseLostError,
    NotFoundError,
    SessionBusyError,
    SessionNotFoundError,
    SessionQuarantinedError,
)
from botfactory.store import _statements as _s
from botfactory.store._fast import Fast
from botfactory.store.approvals import ApprovalStore
from botfactory.store.ids import new_id, new_token
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
from botfactory.store.records import (
    MessageRecord,
    RowLike,
    StepRecord,
    TurnRecord,
    message_from_row,
    step_from_row,
    turn_from_row,
)
from botfactory.store.schema import (
    inbox,
    kill_switches,
    messages,
    outbox,
    session_queue,
    sessions,
    steps,
    turn_events,
    turns,
    usage_counters,
)
from botfactory.store.writer import BatchWriter

__all__ = ["CONTROL_CHANNEL", "EVENTS_CHANNEL", "INBOX_CHANNEL", "RuntimeStore"]

logger = logging.getLogger(__name__)

INBOX_CHANNEL: Final = "botfactory_inbox"
"""PostgreSQL notification channel: a session has new work."""
CONTROL_CHANNEL: Final = "botfactory_control"
"""PostgreSQL notification channel: a cancellation or kill switch changed; the payload names it."""
EVENTS_CHANNEL: Final = "botfactory_events"
"""PostgreSQL notification channel: a session has new events; the payload is the session id."""

_UPSERT: Final[dict[str, Callable[[sa.Table], postgresql.Insert | sqlite.Insert]]] = {
    "postgresql": postgresql.insert,
    "sqlite": sqlite.insert,
}
_OPEN: Final = ("pending", "running")


def _item(row: RowLike, text: str, user_id: str | None) -> InboxItem:
    return InboxItem(
        message_id=row["message_id"],
        session_id=row["session_id"],
        bot=row["bot"],
        seq=row["seq"],
        text=text,
        user_id=user_id,
        dedup_key=row["dedup_key"],
        status=row["status"],
        turn_id=row["turn_id"],
        channel=row["channel"],
        reply_to=row["reply_to"],
        trace_context=row["trace_context"],
        error=row["error"],
        enqueued_at=row["enqueued_at"],
        finished_at=row["finished_at"],
    )


_ITEM_QUERY: Final = sa.select(inbox, messages.c.text, messages.c.user_id).join(
    messages, messages.c.id == inbox.c.message_id
)


def _items(connection: sa.Connection, *where: sa.ColumnElement[bool], limit: int | None = None) -> list[InboxItem]:
    query = _ITEM_QUERY.where(*where).order_by(inbox.c.session_id, inbox.c.seq)
    if limit is not None:
        query = query.limit(limit)
    rows = connection.execute(query).mappings().all()
    return [_item(row, row["text"], row["user_id"]) for row in rows]


@functools.lru_cache(maxsize=64)
def _notify_statement(channels: tuple[str, ...]) -> sa.Select[Any]:
    """``SELECT pg_notify(...)`` for these channels, built once per set so SQLAlchemy compiles it once: built anew
    on every commit it took about a fifth of an enqueue's time on the writer threads (profiled on a busy ``serve``)."""
    return sa.select(*(sa.func.pg_notify(channel, "") for channel in channels))


@dataclasses.dataclass(slots=True)
class _Gathered:
    """What one transaction gathers to write at its end: usage counter deltas and channels to notify."""

    usage: dict[tuple[str, str, str], list[float]] = dataclasses.field(default_factory=dict)
    channels: set[str] = dataclasses.field(default_factory=set)


class RuntimeStore:
    """The runtime's operations on the store, batched through one :class:`BatchWriter` per process.

    Args:
        writer: Runs the operations.
        clock: Current time in epoch seconds; tests inject one.
    """

    def __init__(self, writer: BatchWriter, *, clock: Callable[[], float] = time.time) -> None:
        self.writer = writer
        self._clock = clock
        self._postgres = writer.dialect_name == "postgresql"
        self._upsert = _UPSERT[writer.dialect_name]
        taking = self._upsert(sessions)
        # One statement creates a new session (seq 1) or takes an existing session's next seq, locking its row on
        # PostgreSQL; it returns the seq with the session's bot and status (two statements before).
        self._take_seq = Fast(
            taking.on_conflict_do_update(
                index_elements=[sessions.c.id],
                set_={"last_seq": sessions.c.last_seq + 1, "updated_at": taking.excluded.updated_at},
            ).returning(sessions.c.last_seq, sessions.c.bot, sessions.c.status)
        )
        self._insert_step = Fast(self._upsert(steps).on_conflict_do_nothing(), json=("input", "output"))
        usage = self._upsert(usage_counters)
        self._add_usage_statement = Fast(
            usage.on_conflict_do_update(
                index_elements=[usage_counters.c.scope, usage_counters.c.key, usage_counters.c.day],
                set_={
                    "tokens": usage_counters.c.tokens + usage.excluded.tokens,
                    "cost": usage_counters.c.cost + usage.excluded.cost,
                },
            )
        )
        self._event_rows: list[dict[str, Any]] = []
        self._events_scheduled = False
        # What the current transaction gathers for its end, per thread: on PostgreSQL the writer commits operations
        # that run alone on several threads at once.
        self._transaction_state = threading.local()
        writer.on_begin.append(lambda: self._gathered().usage.clear())
        writer.before_commit.append(self._write_usage)
        writer.before_commit.append(self._send_notifications)

    @property
    def notifies(self) -> bool:
        """Whether this database wakes other processes itself (PostgreSQL ``NOTIFY``)."""
        return self._postgres

    def _gathered(self) -> _Gathered:
        gathered: _Gathered | None = getattr(self._transaction_state, "gathered", None)
        if gathered is None:
            gathered = self._transaction_state.gathered = _Gathered()
        return gathered

    def _notify_on_commit(self, channel: str) -> None:
        self._gathered().channels.add(channel)

    def _notify(self, connection: sa.Connection, channel: str, payload: str = "") -> None:
        """Announce a change on ``channel`` when the transaction commits (PostgreSQL only).

        Listeners re-read the store whatever the payload, so a batch sends each channel once, in one statement.
        """
        del connection, payload
        if self._postgres:
            self._notify_on_commit(channel)

    def _send_notifications(self, connection: sa.Connection) -> None:
        gathered = self._gathered()
        if not gathered.channels:
            return
        channels, gathered.channels = tuple(sorted(gathered.channels)), set()
        connection.execute(_notify_statement(channels))

    # Enqueue

    async def enqueue(self, message: Inbound, *, policy: DoubleTexting = "enqueue") -> Enqueued:
        """Store ``message`` and queue it for its session, once per dedup key.

        Raises:
            SessionBusyError: ``policy`` is ``reject`` and the session still has unanswered messages.
            InvalidInputError: the session belongs to another bot.
        """
        # On PostgreSQL an enqueue commits alone: batched with others it would hold several sessions' rows at
        # once while a worker's batch holds others, and the two processes deadlock (each stall is deadlock_timeout).
        alone = self._postgres
        try:
            return await self.writer.write(lambda connection: self._enqueue(connection, message, policy), alone=alone)
        except sa.exc.IntegrityError:
            # Another process stored the same dedup key between our check and our insert: now it is seen.
            return await self.writer.write(lambda connection: self._enqueue(connection, message, policy), alone=alone)

    def _enqueue(self, connection: sa.Connection, message: Inbound, policy: DoubleTexting) -> Enqueued:
        now = self._clock()
        if message.dedup_key is not None:
            seen = _s.DEDUP.run(connection, {"b_bot": message.bot, "b_key": message.dedup_key}).first()
            if seen is not None:
                return Enqueued(
                    message_id=seen["message_id"], session_id=seen["session_id"], seq=seen["seq"], duplicate=True
                )
        # Lock the queue row before the session row, in the order finishing a turn takes them (its reply takes a
        # seq too): the other order deadlocks with a worker ending a turn on this session (PostgreSQL only).
        key = {"b_session_id": message.session_id}
        queue: Mapping[Any, Any] | None
        if self._postgres:
            queue = connection.execute(_s.QUEUE_ROW_LOCKED, key).mappings().first()
        else:
            queue = _s.QUEUE_ROW.run(connection, key).first()
        # Taking the seq (creating the session if it is new) locks the session row on PostgreSQL: writers to one
        # session take turns from here.
        taken = self._take_seq.run(
            connection,
            {
                "id": message.session_id,
                "bot": message.bot,
                "user_id": message.user_id,
                "status": "active",
                "created_at": now,
                "updated_at": now,
                "last_seq": 1,
            },
        ).first()
        assert taken is not None  # an upsert always returns its row
        seq, owner = taken["last_seq"], taken["bot"]
        if owner != message.bot:
            raise InvalidInputError(
                f"session {message.session_id!r} belongs to bot {owner!r}, not {message.bot!r}; "
                "use a new session id for this bot"
            )
        if taken["status"] == _s.QUARANTINED:
            raise SessionQuarantinedError(
                f"session {message.session_id!r} is quarantined by a safety alert and takes no messages; an operator "
                f"can release it with `botfactory sessions release {message.session_id}` "
                f"(or POST /v1/sessions/{message.session_id}/release)"
            )
        if policy == "reject" and queue is not None and queue["pending"] > 0:
            raise SessionBusyError(
                f"session {message.session_id!r} is still answering an earlier message and bot {message.bot!r} "
                "rejects messages meanwhile; wait for the reply, then send again"
            )
        message_id = new_id()
        _s.INSERT_MESSAGE.run(
            connection,
            {
                "id": message_id,
                "session_id": message.session_id,
                "seq": seq,
                "role": "user",
                "text": message.text,
                "user_id": message.user_id,
                "turn_id": None,
                "created_at": now,
            },
        )
        _s.INSERT_INBOX.run(
            connection,
            {
                "message_id": message_id,
                "session_id": message.session_id,
                "bot": message.bot,
                "seq": seq,
                "dedup_key": message.dedup_key,
                "status": "pending",
                "turn_id": None,
                "channel": message.channel,
                "reply_to": message.reply_to,
                "trace_context": message.trace_context,
                "error": None,
                "enqueued_at": now,
                "finished_at": None,
            },
        )
        interrupted: str | None = None
        if queue is None:
            _s.INSERT_QUEUE.run(
                connection,
                {
                    "session_id": message.session_id,
                    "bot": message.bot,
                    "pending": 1,
                    "ready_at": now,
                    "lease_token": None,
                    "turn_id": None,
                    "cancel": None,
                    "updated_at": now,
                },
            )
        else:
            _s.QUEUE_ADD.run(connection, {"b_session_id": message.session_id, "b_now": now})
            if policy == "interrupt" and queue["turn_id"] is not None and queue["cancel"] is None:
                connection.execute(
                    sa.update(session_queue)
                    .where(session_queue.c.session_id == message.session_id)
                    .values(cancel="interrupt")
                )
                interrupted = queue["turn_id"]
        self._notify(connection, INBOX_CHANNEL)
        if interrupted is not None:
            self._notify(connection, CONTROL_CHANNEL, message.session_id)
        return Enqueued(
            message_id=message_id,
            session_id=message.session_id,
            seq=int(seq),
            duplicate=False,
            interrupted_turn_id=interrupted,
        )

    @staticmethod
    def _next_seq(connection: sa.Connection, session_id: str, now: float) -> int:
        taken = _s.NEXT_SEQ.run(connection, {"b_session_id": session_id, "b_now": now}).first()
        if taken is None:
            raise SessionNotFoundError(f"no session {session_id!r}")
        return int(taken["last_seq"])

    # Claim

    async def claim(
        self,
        limit: int,
        *,
        lease_s: float,
        policies: Mapping[str, DoubleTexting],
        max_attempts: int,
        max_lifetime_s: float,
    ) -> ClaimBatch:
        """Claim up to ``limit`` sessions with work and start (or resume) one turn on each.

        Args:
            lease_s: The lease's length; renew it with :meth:`heartbeat`.
            policies: Double-texting policy per bot (``coalesce`` and ``interrupt`` take every pending message).
            max_attempts: A turn claimed this many times already is dead-lettered instead.
            max_lifetime_s: A turn started longer ago than this ends as ``expired`` instead.
        """
        if limit <= 0:
            return ClaimBatch(claims=())
        return await self.writer.write(
            lambda connection: self._claim(connection, limit, lease_s, policies, max_attempts, max_lifetime_s)
        )

    def _claim(
        self,
        connection: sa.Connection,
        limit: int,
        lease_s: float,
        policies: Mapping[str, DoubleTexting],
        max_attempts: int,
        max_lifetime_s: float,
    ) -> ClaimBatch:
        now = self._clock()
        rows = _s.READY.run(connection, {"b_now": now, "b_limit": limit}).rows
        claims: list[Claim] = []
        closed: list[TurnRecord] = []
        fresh: list[tuple[Mapping[str, Any], int]] = []
        for row in rows:
            session_id = row["session_id"]
            turn_id: str | None = row["turn_id"]
            pending = int(row["pending"])
            if turn_id is not None:
                turn = self._turn(connection, turn_id)
                ending = self._why_not_resume(turn, row["cancel"], now, max_attempts, max_lifetime_s)
                if ending is None:
                    claims.append(self._resume(connection, row, turn, now, lease_s))
                    continue
                outcome, input_status, error = ending
                pending, record = self._close_turn(
                    connection, session_id, turn, outcome, now, input_status=input_status, error=error
                )
                closed.append(record)
            fresh.append((row, pending))
        claims.extend(self._start(connection, fresh, policies, now, lease_s))
        return ClaimBatch(claims=tuple(claims), closed=tuple(closed))

    @staticmethod
    def _why_not_resume(
        turn: TurnRecord, cancel: str | None, now: float, max_attempts: int, max_lifetime_s: float
    ) -> tuple[TurnOutcome, str, str | None] | None:
        if cancel == "cancel":
            return TurnOutcome(status="cancelled", error_code="cancelled", error_message="cancelled"), "cancelled", None
        if cancel == "interrupt":
            return TurnOutcome(status="interrupted", error_code="interrupted"), "pending", None
        if now - turn.started_at > max_lifetime_s:
            hours = max_lifetime_s / 3600
            message = f"this turn ran past the maximum lifetime of {hours:g} hours and was stopped"
            outcome = TurnOutcome(
                status="expired",
                reply=f"Sorry, I had to stop: {message}.",
                error_code="time_limit",
                error_message=message,
            )
            return outcome, "done", None
        if turn.attempts >= max_attempts:
            error = turn.error_message or "the worker running it stopped (crash or lost lease)"
            message = f"gave up after {turn.attempts} attempts: {error}"
            return TurnOutcome(status="failed", error_code="dead_letter", error_message=message), "dead", message
        return None

    def _resume(
        self, connection: sa.Connection, row: Mapping[str, Any], turn: TurnRecord, now: float, lease_s: float
    ) -> Claim:
        session_id = row["session_id"]
        token = new_token()
        connection.execute(
            sa.update(session_queue)
            .where(session_queue.c.session_id == session_id)
            .values(lease_token=token, ready_at=now + lease_s, updated_at=now)
        )
        connection.execute(sa.update(turns).where(turns.c.id == turn.id).values(attempts=turns.c.attempts + 1))
        inputs = _items(connection, inbox.c.turn_id == turn.id)
        recorded = connection.execute(_s.STEPS_OF, {"b_turn_id": turn.id}).mappings()
        return Claim(
            lease=Lease(session_id=session_id, token=token),
            bot=row["bot"],
            user_id=inputs[-1].user_id if inputs else None,
            turn=_with_attempts(turn, turn.attempts + 1),
            inputs=tuple(inputs),
            history=self._history(connection, session_id),
            steps=tuple(step_from_row(step) for step in recorded),
            resumed=True,
            enqueued_at=min((item.enqueued_at for item in inputs), default=now),
        )

    def _start(
        self,
        connection: sa.Connection,
        fresh: Sequence[tuple[Mapping[str, Any], int]],
        policies: Mapping[str, DoubleTexting],
        now: float,
        lease_s: float,
    ) -> list[Claim]:
        """Start a turn on each session in ``fresh`` with its next pending message (all of them if it coalesces)."""
        if not fresh:
            return []
        waiting: dict[str, list[InboxItem]] = {}
        ids = [row["session_id"] for row, _ in fresh]
        for found in connection.execute(_s.PENDING_OF, {"b_ids": ids}).mappings():
            waiting.setdefault(found["session_id"], []).append(_item(found, found["text"], found["user_id"]))
        claims: list[Claim] = []
        turn_rows: list[dict[str, Any]] = []
        inbox_rows: list[dict[str, Any]] = []
        queue_rows: list[dict[str, Any]] = []
        for row, pending in fresh:
            session_id = row["session_id"]
            items = waiting.get(session_id, [])
            if not items:
                # Nothing left to do (the count drifted, e.g. after a cancel): the session rests.
                connection.execute(
                    sa.update(session_queue)
                    .where(session_queue.c.session_id == session_id)
                    .values(pending=0, ready_at=None, lease_token=None, turn_id=None, cancel=None, updated_at=now)
                )
                continue
            inputs = items if policies.get(row["bot"], "enqueue") in ("coalesce", "interrupt") else items[:1]
            token = new_token()
            turn = TurnRecord(
                id=new_id(),
                session_id=session_id,
                bot=row["bot"],
                status="running",
                input_message_id=inputs[-1].message_id,
                reply=None,
                error_code=None,
                error_message=None,
                input_tokens=0,
                output_tokens=0,
                started_at=now,
                finished_at=None,
                attempts=1,
                cost=0.0,
            )
            turn_rows.append(_turn_row(turn))
            inbox_rows.extend({"b_message_id": item.message_id, "b_turn_id": turn.id} for item in inputs)
            queue_rows.append(
                {
                    "b_session_id": session_id,
                    "b_pending": pending,
                    "b_token": token,
                    "b_ready_at": now + lease_s,
                    "b_turn_id": turn.id,
                    "b_now": now,
                }
            )
            claims.append(
                Claim(
                    lease=Lease(session_id=session_id, token=token),
                    bot=row["bot"],
                    user_id=inputs[-1].user_id,
                    turn=turn,
                    inputs=tuple(dataclasses.replace(item, status="running", turn_id=turn.id) for item in inputs),
                    history=self._history(connection, session_id),
                    enqueued_at=inputs[0].enqueued_at,
                )
            )
        if turn_rows:
            _s.INSERT_TURN.run(connection, turn_rows)
            _s.START_INBOX.run(connection, inbox_rows)
            _s.LEASE_QUEUE.run(connection, queue_rows)
        return claims

    @staticmethod
    def _history(connection: sa.Connection, session_id: str) -> tuple[MessageRecord, ...]:
        """The latest answered user messages and delivered replies, oldest first.

        Replies are stored when their turn ends, after messages that arrived meanwhile, so ``seq`` order is the
        order the conversation settled in. Unanswered (including the turn's own), dead and cancelled messages
        and stale replies are left out.
        """
        rows = _s.HISTORY.run(connection, {"b_session_id": session_id}).rows
        return tuple(message_from_row(row) for row in reversed(rows))

    # Holding a lease

    async def heartbeat(self, leases: Sequence[Lease], *, lease_s: float) -> Heartbeat:
        """Extend every held lease; report those lost to another worker and the cancellations asked for."""
        if not leases:
            return Heartbeat()
        return await self.writer.write(lambda connection: self._heartbeat(connection, leases, lease_s))

    def _heartbeat(self, connection: sa.Connection, leases: Sequence[Lease], lease_s: float) -> Heartbeat:
        now = self._clock()
        ids = [lease.session_id for lease in leases]
        rows = connection.execute(
            sa.select(session_queue.c.session_id, session_queue.c.lease_token, session_queue.c.cancel).where(
                session_queue.c.session_id.in_(ids)
            )
        ).all()
        current = {row.session_id: (row.lease_token, row.cancel) for row in rows}
        lost: set[str] = set()
        cancel: dict[str, CancelKind] = {}
        held: list[dict[str, Any]] = []
        for lease in leases:
            token, wanted = current.get(lease.session_id, (None, None))
            if token != lease.token:
                lost.add(lease.session_id)
                continue
            held.append({"b_session_id": lease.session_id, "b_token": lease.token})
            if wanted in ("cancel", "interrupt"):
                cancel[lease.session_id] = wanted
        if held:
            connection.execute(
                sa.update(session_queue)
                .where(
                    session_queue.c.session_id == sa.bindparam("b_session_id"),
                    session_queue.c.lease_token == sa.bindparam("b_token"),
                )
                .values(ready_at=now + lease_s),
                held,
            )
        return Heartbeat(lost=frozenset(lost), cancel=cancel)

    def _check_lease(self, connection: sa.Connection, lease: Lease) -> None:
        token = _s.LEASE_TOKEN.run(connection, {"b_session_id": lease.session_id}).scalar()
        if token != lease.token:
            raise LeaseLostError(
                f"the lease on session {lease.session_id!r} was taken over by another worker; "
                "this worker stops the turn and the new holder resumes it"
            )

    async def set_reply_placeholder(self, lease: Lease, message_id: str, reply_to: dict[str, Any] | None) -> None:
        """Replace a running message's ``reply_to`` (a channel's "thinking…" placeholder), fenced by the lease.

        The turn's reply carries the last input's ``reply_to`` to the outbox, so the channel can update the
        placeholder in place; a resumed turn finds it there and posts none again.

        Raises:
            LeaseLostError: another worker holds the session now; nothing was written.
        """

        def write(connection: sa.Connection) -> None:
            self._check_lease(connection, lease)
            connection.execute(
                sa.update(inbox)
                .where(inbox.c.message_id == message_id, inbox.c.session_id == lease.session_id)
                .values(reply_to=reply_to)
            )

        await self.writer.write(write)

    async def record_step(self, lease: Lease, step: StepRecord, usage: UsageDelta | None = None) -> None:
        """Record one completed step (and what it cost) before the turn goes on.

        Raises:
            LeaseLostError: another worker holds the session now; nothing was written.
        """
        await self.writer.write(lambda connection: self._record_step(connection, lease, step, usage))

    def _record_step(self, connection: sa.Connection, lease: Lease, step: StepRecord, usage: UsageDelta | None) -> None:
        self._check_lease(connection, lease)
        inserted = self._insert_step.run(connection, _step_row(step))
        if inserted.rowcount == 0:
            raise LeaseLostError(
                f"step {step.position} of turn {step.turn_id!r} is already recorded by another worker; "
                "this worker stops the turn"
            )
        if usage is not None and (usage.tokens or usage.cost):
            self._add_usage(connection, usage)

    async def add_usage(self, usage: UsageDelta) -> None:
        """Count a model call made outside a turn (the inference endpoint) against the usage counters."""
        if usage.tokens or usage.cost:
            await self.writer.write(lambda connection: self._add_usage(connection, usage))

    def _add_usage(self, connection: sa.Connection, usage: UsageDelta) -> None:
        """Count ``usage`` in this transaction; the counters are written once, last, by :meth:`_write_usage`."""
        del connection
        keys = [("bot", usage.bot, usage.day)]
        if usage.session_id is not None:
            keys.append(("session", usage.session_id, ""))
        if usage.user_id is not None:
            keys.append(("user", usage.user_id, usage.day))
        if usage.model is not None:
            keys.append(("model", usage.model, usage.day))
        for key in keys:
            total = self._gathered().usage.setdefault(key, [0, 0.0])
            total[0] += usage.tokens
            total[1] += usage.cost

    def _write_usage(self, connection: sa.Connection) -> None:
        """Add the transaction's usage to the counters: after every other write, in key order.

        A bot's daily counter is one row every worker updates. Taken last (every other row this transaction locks
        is already locked) and in one order, it can never be part of a deadlock between processes' batches; taken
        in the middle of a batch, it deadlocked with a session's queue row or an outbox row another process held.
        """
        usage = self._gathered().usage
        if not usage:
            return
        rows = [
            {"scope": scope, "key": key, "day": day, "tokens": int(tokens), "cost": cost}
            for (scope, key, day), (tokens, cost) in sorted(usage.items())
        ]
        usage.clear()
        self._add_usage_statement.run(connection, rows)

    # Ending a turn

    async def finish(
        self, lease: Lease, turn_id: str, outcome: TurnOutcome, *, claim: Claim | None = None
    ) -> TurnRecord:
        """End the running turn: its status, its reply in the outbox, its messages answered, the lease released.

        ``interrupted`` puts the turn's messages back in the queue for the next turn to take with the new ones.
        Pass the ``claim`` the turn came from to spare re-reading its turn and messages.

        Raises:
            LeaseLostError: another worker holds the session now; nothing was written.
        """
        return await self.writer.write(lambda connection: self._finish(connection, lease, turn_id, outcome, claim))

    def _finish(
        self, connection: sa.Connection, lease: Lease, turn_id: str, outcome: TurnOutcome, claim: Claim | None
    ) -> TurnRecord:
        now = self._clock()
        known = claim is not None and claim.turn.id == turn_id
        turn = claim.turn if claim is not None and known else self._turn(connection, turn_id)
        inputs = claim.inputs if claim is not None and known else None
        input_status = {"interrupted": "pending", "cancelled": "cancelled"}.get(outcome.status, "done")
        _, record = self._close_turn(
            connection, lease.session_id, turn, outcome, now, input_status=input_status, inputs=inputs, lease=lease
        )
        return record

    def _close_turn(
        self,
        connection: sa.Connection,
        session_id: str,
        turn: TurnRecord,
        outcome: TurnOutcome,
        now: float,
        *,
        input_status: str,
        error: str | None = None,
        inputs: Sequence[InboxItem] | None = None,
        lease: Lease | None = None,
    ) -> tuple[int, TurnRecord]:
        """End ``turn`` and release its session; returns the session's pending count after it and the turn.

        With ``lease``, only while that lease holds: otherwise :class:`LeaseLostError` (and the caller's
        transaction is rolled back).
        """
        values: dict[str, Any] = {
            "status": outcome.status,
            "reply": outcome.reply,
            "error_code": outcome.error_code,
            "error_message": outcome.error_message,
            "input_tokens": outcome.input_tokens,
            "output_tokens": outcome.output_tokens,
            "cost": outcome.cost,
            "finished_at": now,
        }
        _s.FINISH_TURN.run(
            connection,
            {f"b_{key}": value for key, value in values.items() if key != "finished_at"}
            | {"b_turn_id": turn.id, "b_now": now},
        )
        if inputs is None:
            inputs = _items(connection, inbox.c.turn_id == turn.id)
        if input_status == "pending":
            _s.REQUEUE_INBOX.run(connection, {"b_turn_id": turn.id})
            answered = 0
        else:
            _s.ANSWER_INBOX.run(
                connection, {"b_turn_id": turn.id, "b_status": input_status, "b_error": error, "b_now": now}
            )
            answered = len(inputs)
        if outcome.status == "cancelled":
            answered += self._cancel_pending(connection, session_id, now)
        release = _s.RELEASE_HELD if lease is not None else _s.RELEASE_ANY
        parameters: dict[str, Any] = {"b_session_id": session_id, "b_answered": answered, "b_now": now}
        if lease is not None:
            parameters["b_token"] = lease.token
        left = release.run(connection, parameters).scalar()
        if left is None:
            if lease is not None:
                raise LeaseLostError(
                    f"the lease on session {session_id!r} was taken over by another worker; "
                    "this worker stops the turn and the new holder resumes it"
                )
            left = 0
        pending = int(left)
        if outcome.reply is not None and inputs:
            self._store_reply(connection, session_id, turn, outcome, inputs[-1], now, waiting=pending > 0)
        if pending > 0:
            self._notify(connection, INBOX_CHANNEL)
        self._add_event(
            connection,
            session_id,
            turn.id,
            "turn_finished",
            {"status": outcome.status, "reply": outcome.reply, "error_code": outcome.error_code},
            now,
        )
        return pending, dataclasses.replace(turn, **values)

    def _store_reply(
        self,
        connection: sa.Connection,
        session_id: str,
        turn: TurnRecord,
        outcome: TurnOutcome,
        last_input: InboxItem,
        now: float,
        *,
        waiting: bool,
    ) -> None:
        assert outcome.reply is not None
        stale = outcome.stale_when_newer and waiting
        if not stale:
            _s.INSERT_MESSAGE.run(
                connection,
                {
                    "id": new_id(),
                    "session_id": session_id,
                    "seq": self._next_seq(connection, session_id, now),
                    "role": "assistant",
                    "text": outcome.reply,
                    "user_id": None,
                    "turn_id": turn.id,
                    "created_at": now,
                },
            )
        if stale:
            status = "stale"
        elif last_input.channel == API_CHANNEL:
            status = "delivered"
        else:
            status = "pending"
        _s.INSERT_OUTBOX.run(
            connection,
            {
                "id": new_id(),
                "turn_id": turn.id,
                "session_id": session_id,
                "bot": turn.bot,
                "channel": last_input.channel,
                "reply_to": last_input.reply_to,
                "text": outcome.reply,
                "status": status,
                "attempts": 0,
                "next_attempt_at": now if status == "pending" else None,
                "error": None,
                "created_at": now,
                "delivered_at": now if status == "delivered" else None,
            },
        )

    def _cancel_pending(self, connection: sa.Connection, session_id: str, now: float) -> int:
        result = connection.execute(
            sa.update(inbox)
            .where(inbox.c.session_id == session_id, inbox.c.status == "pending")
            .values(status="cancelled", finished_at=now)
        )
        return int(result.rowcount)

    async def release(self, lease: Lease, turn_id: str, *, error: str, retry_in_s: float, max_attempts: int) -> bool:
        """Give a failed attempt back: retry after ``retry_in_s``, or dead-letter the turn's messages.

        Returns ``True`` when the messages went to the dead letters.

        Raises:
            LeaseLostError: another worker holds the session now; nothing was written.
        """
        return await self.writer.write(
            lambda connection: self._release(connection, lease, turn_id, error, retry_in_s, max_attempts)
        )

    def _release(
        self, connection: sa.Connection, lease: Lease, turn_id: str, error: str, retry_in_s: float, max_attempts: int
    ) -> bool:
        self._check_lease(connection, lease)
        now = self._clock()
        turn = self._turn(connection, turn_id)
        if turn.attempts >= max_attempts:
            message = f"gave up after {turn.attempts} attempts: {error}"
            outcome = TurnOutcome(status="failed", error_code="dead_letter", error_message=message)
            self._close_turn(
                connection, lease.session_id, turn, outcome, now, input_status="dead", error=message, lease=lease
            )
            return True
        connection.execute(sa.update(turns).where(turns.c.id == turn_id).values(error_message=error))
        connection.execute(
            sa.update(session_queue)
            .where(session_queue.c.session_id == lease.session_id)
            .values(lease_token=None, ready_at=now + retry_in_s, updated_at=now)
        )
        return False

    async def park(self, lease: Lease, turn_id: str, *, until: float, reason: str) -> None:
        """Let go of a turn that waits for a person (an approval) until ``until`` or until it is woken.

        Not a failed attempt: the attempt is given back. Deciding the approval wakes the session at once
        (:meth:`ApprovalStore.decide`); at ``until`` any worker resumes it anyway, to find the request expired.

        Raises:
            LeaseLostError: another worker holds the session now; nothing was written.
        """
        await self.writer.write(lambda connection: self._park(connection, lease, turn_id, until, reason))

    def _park(self, connection: sa.Connection, lease: Lease, turn_id: str, until: float, reason: str) -> None:
        self._check_lease(connection, lease)
        now = self._clock()
        connection.execute(
            sa.update(turns)
            .where(turns.c.id == turn_id)
            .values(attempts=sa.case((turns.c.attempts > 0, turns.c.attempts - 1), else_=0), error_message=reason)
        )
        connection.execute(
            sa.update(session_queue)
            .where(session_queue.c.session_id == lease.session_id)
            .values(lease_token=None, ready_at=until, updated_at=now)
        )

    @property
    def approvals(self) -> ApprovalStore:
        """Requests for approval; deciding one wakes its session in the same transaction."""
        return ApprovalStore(
            self.writer, notify=self._notify_on_commit if self._postgres else _ignore, inbox_channel=INBOX_CHANNEL
        )

    async def unlease(self, leases: Sequence[Lease]) -> None:
        """Let go of sessions at once (shutdown): their turns stay running and any worker resumes them now."""
        if leases:
            await self.writer.write(lambda connection: self._unlease(connection, leases))

    def _unlease(self, connection: sa.Connection, leases: Sequence[Lease]) -> None:
        now = self._clock()
        # A clean hand-over (shutdown, rolling restart) is not a failed attempt: give the attempt back, so
        # restarts alone never dead-letter a long turn.
        held = connection.execute(
            sa.select(session_queue.c.session_id, session_queue.c.lease_token, session_queue.c.turn_id).where(
                session_queue.c.session_id.in_([lease.session_id for lease in leases])
            )
        ).all()
        tokens = {lease.session_id: lease.token for lease in leases}
        turn_ids = [
            row.turn_id for row in held if row.turn_id is not None and tokens.get(row.session_id) == row.lease_token
        ]
        if turn_ids:
            connection.execute(
                sa.update(turns)
                .where(turns.c.id.in_(turn_ids), turns.c.attempts > 0)
                .values(attempts=turns.c.attempts - 1)
            )
        connection.execute(
            sa.update(session_queue)
            .where(
                session_queue.c.session_id == sa.bindparam("b_session_id"),
                session_queue.c.lease_token == sa.bindparam("b_token"),
            )
            .values(lease_token=None, ready_at=now),
            [{"b_session_id": lease.session_id, "b_token": lease.token} for lease in leases],
        )
        self._notify(connection, INBOX_CHANNEL)

    # Cancellation

    async def request_cancel(self, session_id: str, kind: CancelKind = "cancel") -> CancelResult:
        """Cancel the session's running turn and its unanswered messages.

        A turn no worker holds is ended at once; a held one is flagged and its worker stops it.

        Raises:
            SessionNotFoundError: there is no such session.
        """
        return await self.writer.write(
            lambda connection: self._request_cancel(connection, session_id, kind), alone=self._postgres
        )

    def _request_cancel(self, connection: sa.Connection, session_id: str, kind: CancelKind) -> CancelResult:
        now = self._clock()
        exists = connection.execute(sa.select(sessions.c.id).where(sessions.c.id == session_id)).first()
        if exists is None:
            raise SessionNotFoundError(f"no session {session_id!r}; list sessions with `botfactory sessions list`")
        row = connection.execute(_s.QUEUE_ROW_LOCKED, {"b_session_id": session_id}).mappings().first()
        if row is None:
            return CancelResult(session_id=session_id, turn_id=None, running=False, cancelled_messages=0)
        cancelled = self._cancel_pending(connection, session_id, now) if kind == "cancel" else 0
        pending = max(int(row["pending"]) - cancelled, 0)
        turn_id: str | None = row["turn_id"]
        held = turn_id is not None and _leased(row["lease_token"], row["ready_at"], now)
        values: dict[str, Any] = {"pending": pending, "updated_at": now}
        if held:
            values["cancel"] = kind
        elif turn_id is None and pending == 0:
            values["ready_at"] = None
        connection.execute(sa.update(session_queue).where(session_queue.c.session_id == session_id).values(values))
        if held:
            self._notify(connection, CONTROL_CHANNEL, session_id)
        elif turn_id is not None:
            turn = self._turn(connection, turn_id)
            outcome = TurnOutcome(status="cancelled", error_code="cancelled", error_message="cancelled")
            self._close_turn(connection, session_id, turn, outcome, now, input_status="cancelled")
        return CancelResult(session_id=session_id, turn_id=turn_id, running=held, cancelled_messages=cancelled)

    # Events

    def add_events(self, events: Iterable[tuple[str, str | None, str, dict[str, Any]]]) -> None:
        """Store turn events ``(session_id, turn_id, type, data)`` with the next batch, without waiting.

        Events of every turn in the process are gathered and written by one statement per batch.
        """
        now = self._clock()
        self._event_rows.extend(
            {"session_id": s, "turn_id": t, "type": kind, "data": data, "created_at": now}
            for s, t, kind, data in events
        )
        if self._event_rows and not self._events_scheduled:
            self._events_scheduled = True
            self.writer.write_later(self._flush_events)

    def _flush_events(self, connection: sa.Connection) -> None:
        rows, self._event_rows = self._event_rows, []
        self._events_scheduled = False
        if not rows:
            return
        _s.INSERT_EVENT.run(connection, rows)
        for session_id in sorted({str(row["session_id"]) for row in rows}):
            self._notify(connection, EVENTS_CHANNEL, session_id)

    def _add_event(
        self,
        connection: sa.Connection,
        session_id: str,
        turn_id: str | None,
        kind: str,
        data: dict[str, Any],
        now: float,
    ) -> None:
        _s.INSERT_EVENT.run(
            connection,
            {"session_id": session_id, "turn_id": turn_id, "type": kind, "data": data, "created_at": now},
        )
        self._notify(connection, EVENTS_CHANNEL, session_id)

    async def events_after(self, session_id: str, after_id: int, *, limit: int = 500) -> list[EventRecord]:
        """The session's events with an id above ``after_id``, oldest first."""

        def read(connection: sa.Connection) -> list[EventRecord]:
            rows = connection.execute(
                sa.select(turn_events)
                .where(turn_events.c.session_id == session_id, turn_events.c.id > after_id)
                .order_by(turn_events.c.id)
                .limit(limit)
            ).mappings()
            return [EventRecord(**dict(row)) for row in rows]

        return await self.writer.read(read)

    async def last_event_id(self, session_id: str) -> int:
        """The id of the session's latest event, 0 when it has none."""

        def read(connection: sa.Connection) -> int:
            query = sa.select(sa.func.coalesce(sa.func.max(turn_events.c.id), 0)).where(
                turn_events.c.session_id == session_id
            )
            return int(connection.execute(query).scalar_one())

        return await self.writer.read(read)

    async def delete_events_before(self, cutoff: float) -> int:
        """Drop events older than ``cutoff``; returns how many."""

        def write(connection: sa.Connection) -> int:
            return int(connection.execute(sa.delete(turn_events).where(turn_events.c.created_at < cutoff)).rowcount)

        return await self.writer.write(write)

    # Kill switches and usage

    async def kill_switches(self) -> dict[tuple[str, str], str | None]:
        """Every switch that is on: ``(kind, name) -> reason``."""

        def read(connection: sa.Connection) -> dict[tuple[str, str], str | None]:
            return {(row.kind, row.name): row.reason for row in connection.execute(sa.select(kill_switches))}

        return await self.writer.read(read)

    async def set_kill_switch(self, kind: str, name: str, *, on: bool, reason: str | None = None) -> bool:
        """Turn a switch on or off; returns whether it changed."""

        def write(connection: sa.Connection) -> bool:
            key = (kill_switches.c.kind == kind, kill_switches.c.name == name)
            if on:
                inserted = connection.execute(
                    self._upsert(kill_switches)
                    .values(kind=kind, name=name, reason=reason, created_at=self._clock())
                    .on_conflict_do_nothing()
                )
                changed = inserted.rowcount > 0
            else:
                changed = connection.execute(sa.delete(kill_switches).where(*key)).rowcount > 0
            if changed:
                self._notify(connection, CONTROL_CHANNEL, f"kill:{kind}:{name}")
            return changed

        return await self.writer.write(write)

    async def usage(self, keys: Sequence[tuple[str, str, str]]) -> dict[tuple[str, str, str], tuple[int, float]]:
        """Counters for ``(scope, key, day)`` keys: ``(tokens, cost)``; missing keys are zero."""

        def read(connection: sa.Connection) -> dict[tuple[str, str, str], tuple[int, float]]:
            found: dict[tuple[str, str, str], tuple[int, float]] = dict.fromkeys(keys, (0, 0.0))
            conditions = [
                sa.and_(usage_counters.c.scope == s, usage_counters.c.key == k, usage_counters.c.day == d)
                for s, k, d in keys
            ]
            for row in connection.execute(sa.select(usage_counters).where(sa.or_(*conditions))):
                found[(row.scope, row.key, row.day)] = (int(row.tokens), float(row.cost))
            return found

        if not keys:
            return {}
        return await self.writer.read(read)

    # Inspection and dead letters

    async def queue_state(self, session_id: str) -> QueueState | None:
        """The session's queue row, or ``None`` when nothing was ever enqueued for it."""

        def read(connection: sa.Connection) -> QueueState | None:
            row = connection.execute(sa.select(session_queue).where(session_queue.c.session_id == session_id)).first()
            if row is None:
                return None
            leased = _leased(row.lease_token, row.ready_at, self._clock())
            return QueueState(
                pending=row.pending, turn_id=row.turn_id, leased=leased, ready_at=row.ready_at, cancel=row.cancel
            )

        return await self.writer.read(read)

    async def list_sessions(
        self, *, active_since: float | None = None, bot: str | None = None, limit: int = 100
    ) -> list[SessionSummary]:
        """Sessions, most recently active first.

        Args:
            active_since: Only sessions with queued or running work, or any activity after this time.
            bot: Only this bot's sessions.
        """

        def read(connection: sa.Connection) -> list[SessionSummary]:
            now = self._clock()
            query = (
                sa.select(
                    sessions,
                    session_queue.c.pending,
                    session_queue.c.turn_id,
                    session_queue.c.lease_token,
                    session_queue.c.ready_at,
                )
                .select_from(sessions.outerjoin(session_queue, session_queue.c.session_id == sessions.c.id))
                .order_by(sessions.c.updated_at.desc(), sessions.c.id)
                .limit(limit)
            )
            if bot is not None:
                query = query.where(sessions.c.bot == bot)
            if active_since is not None:
                query = query.where(
                    sa.or_(session_queue.c.ready_at.is_not(None), sessions.c.updated_at >= active_since)
                )
            found = []
            for row in connection.execute(query).mappings():
                pending = int(row["pending"] or 0)
                leased = _leased(row["lease_token"], row["ready_at"], now)
                state = session_state(turn_id=row["turn_id"], pending=pending, leased=leased)
                if row["status"] == _s.QUARANTINED:
                    state = _s.QUARANTINED
                found.append(
                    SessionSummary(
                        id=row["id"],
                        bot=row["bot"],
                        user_id=row["user_id"],
                        state=state,
                        pending=pending,
                        turn_id=row["turn_id"],
                        created_at=row["created_at"],
                        updated_at=row["updated_at"],
                    )
                )
            return found

        return await self.writer.read(read)

    async def set_session_status(self, session_id: str, status: str) -> bool:
        """Set the session's status (``active`` or ``quarantined``); whether it changed.

        A quarantined session's messages are not claimed (a running turn finishes); back to ``active``, its queued
        work is claimed again at once.

        Raises:
            SessionNotFoundError: there is no such session.
        """

        def write(connection: sa.Connection) -> bool:
            found = connection.execute(sa.select(sessions.c.status).where(sessions.c.id == session_id)).first()
            if found is None:
                raise SessionNotFoundError(f"no session {session_id!r}; list sessions with `botfactory sessions list`")
            if found.status == status:
                return False
            connection.execute(sa.update(sessions).where(sessions.c.id == session_id).values(status=status))
            self._notify(connection, INBOX_CHANNEL)
            return True

        return await self.writer.write(write)

    async def inbox_items(self, session_id: str) -> list[InboxItem]:
        """The session's inbound messages with their status, in arrival order."""
        return await self.writer.read(lambda connection: _items(connection, inbox.c.session_id == session_id))

    async def outbox_items(
        self, session_id: str | None = None, *, status: str | None = None, limit: int = 100
    ) -> list[OutboxRecord]:
        """Replies of one session (or all), optionally with one status, oldest first."""

        def read(connection: sa.Connection) -> list[OutboxRecord]:
            query = sa.select(outbox).order_by(outbox.c.created_at, outbox.c.id).limit(limit)
            if session_id is not None:
                query = query.where(outbox.c.session_id == session_id)
            if status is not None:
                query = query.where(outbox.c.status == status)
            return [OutboxRecord(**dict(row)) for row in connection.execute(query).mappings()]

        return await self.writer.read(read)

    async def dead_letters(self, *, bot: str | None = None, limit: int = 100) -> list[InboxItem]:
        """Messages that failed every attempt, newest first."""

        def read(connection: sa.Connection) -> list[InboxItem]:
            where = [inbox.c.status == "dead"]
            if bot is not None:
                where.append(inbox.c.bot == bot)
            query = _ITEM_QUERY.where(*where).order_by(inbox.c.finished_at.desc()).limit(limit)
            return [_item(row, row["text"], row["user_id"]) for row in connection.execute(query).mappings()]

        return await self.writer.read(read)

    async def retry_dead_letter(self, message_id: str) -> InboxItem:
        """Put a dead message back at the end of its session's queue, as a new message with the same text.

        Raises:
            NotFoundError: no dead message has that id.
        """

        def write(connection: sa.Connection) -> InboxItem:
            dead = _take_dead_letter(connection, message_id, becomes="retried")
            self._enqueue(
                connection,
                Inbound(
                    session_id=dead.session_id,
                    bot=dead.bot,
                    text=dead.text,
                    user_id=dead.user_id,
                    channel=dead.channel,
                    reply_to=dead.reply_to,
                    trace_context=dead.trace_context,
                ),
                "enqueue",
            )
            return dead

        return await self.writer.write(write, alone=self._postgres)

    async def discard_dead_letter(self, message_id: str) -> InboxItem:
        """Mark a dead message as discarded: it leaves the dead-letter list and is never retried.

        Raises:
            NotFoundError: no dead message has that id.
        """

        def write(connection: sa.Connection) -> InboxItem:
            return _take_dead_letter(connection, message_id, becomes="discarded")

        return await self.writer.write(write)

    # Outbox delivery

    async def due_deliveries(self, channels: Sequence[str], *, limit: int = 50) -> list[OutboxRecord]:
        """Replies waiting for delivery on ``channels`` whose next attempt is due."""

        def read(connection: sa.Connection) -> list[OutboxRecord]:
            query = (
                sa.select(outbox)
                .where(
                    outbox.c.status == "pending",
                    outbox.c.channel.in_(channels),
                    outbox.c.next_attempt_at <= self._clock(),
                )
                .order_by(outbox.c.next_attempt_at)
                .limit(limit)
            )
            return [OutboxRecord(**dict(row)) for row in connection.execute(query).mappings()]

        if not channels:
            return []
        return await self.writer.read(read)

    async def begin_delivery(self, outbox_id: str, *, retry_in_s: float) -> OutboxRecord | None:
        """Take a reply for one delivery attempt, or ``None`` if it is gone, done, or stale by now.

        The next attempt is scheduled ``retry_in_s`` ahead before sending, so a crash mid-send is retried;
        a reply whose session got a newer message (under ``coalesce``/``interrupt``, marked by the caller via
        :meth:`mark_stale`) is never sent.
        """

        def write(connection: sa.Connection) -> OutboxRecord | None:
            now = self._clock()
            row = (
                connection.execute(sa.select(outbox).where(outbox.c.id == outbox_id).with_for_update())
                .mappings()
                .first()
            )
            if row is None or row["status"] != "pending" or (row["next_attempt_at"] or 0) > now:
                return None
            connection.execute(
                sa.update(outbox)
                .where(outbox.c.id == outbox_id)
                .values(attempts=outbox.c.attempts + 1, next_attempt_at=now + retry_in_s)
            )
            return OutboxRecord(**{**dict(row), "attempts": row["attempts"] + 1})

        return await self.writer.write(write)

    async def end_delivery(
        self, outbox_id: str, *, status: str, error: str | None = None, retry_at: float | None = None
    ) -> None:
        """Record a delivery's outcome: ``delivered``, ``stale``, ``failed``, or ``pending`` again at ``retry_at``."""

        def write(connection: sa.Connection) -> None:
            values: dict[str, Any] = {"status": status, "error": error}
            if status == "delivered":
                values["delivered_at"] = self._clock()
            if retry_at is not None:
                values["next_attempt_at"] = retry_at
            connection.execute(sa.update(outbox).where(outbox.c.id == outbox_id).values(values))

        await self.writer.write(write)

    async def has_newer_messages(self, session_id: str, turn_id: str) -> bool:
        """Whether messages arrived on the session after the ones ``turn_id`` answered (its reply is stale)."""

        def read(connection: sa.Connection) -> bool:
            last = connection.execute(
                sa.select(sa.func.max(inbox.c.seq)).where(inbox.c.turn_id == turn_id)
            ).scalar_one_or_none()
            if last is None:
                return False
            newer = connection.execute(
                sa.select(inbox.c.message_id)
                .where(inbox.c.session_id == session_id, inbox.c.seq > last, inbox.c.status.in_(_OPEN))
                .limit(1)
            ).first()
            return newer is not None

        return await self.writer.read(read)

    # Helpers

    @staticmethod
    def _turn(connection: sa.Connection, turn_id: str) -> TurnRecord:
        row = connection.execute(_s.TURN_BY_ID, {"b_turn_id": turn_id}).mappings().one()
        return turn_from_row(row)


def _ignore(channel: str) -> None:
    """SQLite has no notifications: other processes see the commit through the change counter."""


def _leased(token: str | None, ready_at: float | None, now: float) -> bool:
    """Whether a worker holds the session now: it has a claim whose lease (``ready_at``) has not run out."""
    return token is not None and (ready_at or 0) > now


def _take_dead_letter(connection: sa.Connection, message_id: str, *, becomes: str) -> InboxItem:
    """The dead message ``message_id``, now marked ``becomes`` (it leaves the dead-letter list).

    Raises:
        NotFoundError: no dead message has that id.
    """
    found = _items(connection, inbox.c.message_id == message_id, inbox.c.status == "dead")
    if not found:
        raise NotFoundError(f"no dead letter {message_id!r}; list them with `botfactory inbox dead-letters`")
    connection.execute(sa.update(inbox).where(inbox.c.message_id == message_id).values(status=becomes))
    return found[0]


def _with_attempts(turn: TurnRecord, attempts: int) -> TurnRecord:
    return dataclasses.replace(turn, attempts=attempts)


def _turn_row(turn: TurnRecord) -> dict[str, Any]:
    # Shallow on purpose: dataclasses.asdict deep-copies every value, which costs more than the insert.
    return {name: getattr(turn, name) for name in _TURN_FIELDS}


def _step_row(step: StepRecord) -> dict[str, Any]:
    return {name: getattr(step, name) for name in _STEP_FIELDS}


_TURN_FIELDS: Final = tuple(field.name for field in dataclasses.fields(TurnRecord))
_STEP_FIELDS: Final = tuple(field.name for field in dataclasses.fields(StepRecord))
