"""What channels, the API and the CLI ask of the runtime: enqueue, wait for a reply, watch, cancel, operate.

Nothing here runs agents: that is the :class:`~botfactory.runtime.worker.Worker`'s job, in this process
(``botfactory up``) or in others (``botfactory worker``). Everything goes through the store, so the answers are
the same whichever process asks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any, Final

from botfactory.agents import BotRegistry
from botfactory.config import Settings
from botfactory.errors import (
    ForbiddenError,
    InvalidInputError,
    PayloadTooLargeError,
    SessionQuarantinedError,
    StoreError,
)
from botfactory.observability import AlertNotifier, current_trace_context, safety_rule_for, screen_message
from botfactory.runtime.limits import Controls
from botfactory.runtime.signals import Pulse, Signals
from botfactory.store import (
    API_CHANNEL,
    AlertRecord,
    AlertStatus,
    AlertStore,
    ApprovalRecord,
    ApprovalStatus,
    CancelResult,
    Enqueued,
    EventRecord,
    Inbound,
    InboxItem,
    MessageRecord,
    NewAlert,
    OutboxRecord,
    QueueState,
    RuntimeStore,
    SessionRecord,
    SessionSummary,
    Store,
    TurnRecord,
    session_state,
)

__all__ = ["EventCallback", "InvokeResult", "Runtime", "SessionView"]

CALLER_GROUPS_KEY: Final = "caller_groups"
"""Where a message keeps its user's groups (from the channel's authentication) for tool policies."""

logger = logging.getLogger(__name__)

EventCallback = Callable[[dict[str, Any]], Awaitable[None]]
_MAX_KEY_CHARS: Final = 256
_WAIT_POLL_S: Final = 0.5
_TICK_S: Final = 15.0


@dataclass(frozen=True, kw_only=True)
class InvokeResult:
    """The outcome of one message's turn as a channel reports it."""

    session_id: str
    turn_id: str | None
    status: str
    reply: str
    error_code: str | None = None
    message_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class SessionView:
    """Everything stored about a session: its queue state, messages, turns and replies."""

    session: SessionRecord
    queue: QueueState | None
    messages: list[MessageRecord]
    inbox: list[InboxItem]
    turns: list[TurnRecord]
    outbox: list[OutboxRecord]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the API."""
        status_of = {item.message_id: item.status for item in self.inbox}
        replies = {reply.turn_id: reply for reply in self.outbox}
        queue = self.queue
        return {
            "id": self.session.id,
            "bot": self.session.bot,
            "user_id": self.session.user_id,
            "created_at": self.session.created_at,
            "updated_at": self.session.updated_at,
            "state": "quarantined" if self.session.status == "quarantined" else _state(queue),
            "pending": queue.pending if queue else 0,
            "running_turn_id": queue.turn_id if queue else None,
            "messages": [
                {
                    "id": m.id,
                    "seq": m.seq,
                    "role": m.role,
                    "text": m.text,
                    "user_id": m.user_id,
                    "turn_id": m.turn_id,
                    "status": status_of.get(m.id),
                    "created_at": m.created_at,
                }
                for m in self.messages
            ],
            "turns": [
                {
                    "id": t.id,
                    "status": t.status,
                    "attempts": t.attempts,
                    "reply": t.reply,
                    "reply_delivery": replies[t.id].status if t.id in replies else None,
                    "error_code": t.error_code,
                    "error_message": t.error_message,
                    "input_tokens": t.input_tokens,
                    "output_tokens": t.output_tokens,
                    "cost": t.cost,
                    "message_ids": [i.message_id for i in self.inbox if i.turn_id == t.id],
                    "started_at": t.started_at,
                    "finished_at": t.finished_at,
                }
                for t in self.turns
            ],
        }


def _state(queue: QueueState | None) -> str:
    if queue is None:
        return "idle"
    return session_state(turn_id=queue.turn_id, pending=queue.pending, leased=queue.leased)


class Runtime:
    """The runtime as channels see it.

    Args:
        settings: Limits on input and the runtime settings.
        store: Sessions, messages and turns.
        queue: The runtime's queue operations.
        bots: The bots that can be addressed.
        signals: This process's wake-ups.
        controls: Kill switches.
        alerts: Raises alerts; with a ``safety`` rule, inbound messages are screened as they are enqueued.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        queue: RuntimeStore,
        bots: BotRegistry,
        signals: Signals,
        controls: Controls,
        alerts: AlertNotifier | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.queue = queue
        self.bots = bots
        self.signals = signals
        self.controls = controls
        self._clock = clock
        self._streams_ended = False
        self.alerts = alerts
        self.alert_store = alerts.store if alerts is not None else AlertStore(store.engine)

    def check_input(self, *, session_id: str, text: str, user_id: str | None, dedup_key: str | None = None) -> None:
        """Reject input no turn should start from.

        Raises:
            InvalidInputError: empty text, or a bad session id, user id or dedup key.
            PayloadTooLargeError: text longer than ``max_message_chars``.
        """
        if not text.strip():
            raise InvalidInputError("the message text is empty; send some text")
        if len(text) > self.settings.max_message_chars:
            raise PayloadTooLargeError(
                f"the message has {len(text)} characters, over the limit of {self.settings.max_message_chars}; "
                "shorten it or raise max_message_chars"
            )
        for name, value in (("session_id", session_id), ("user_id", user_id), ("dedup_key", dedup_key)):
            if value is not None and not (0 < len(value) <= _MAX_KEY_CHARS and value.isprintable()):
                raise InvalidInputError(f"{name} must be 1 to {_MAX_KEY_CHARS} printable characters")

    async def enqueue(
        self,
        bot_name: str,
        *,
        session_id: str,
        text: str,
        user_id: str | None = None,
        dedup_key: str | None = None,
        channel: str = API_CHANNEL,
        reply_to: dict[str, Any] | None = None,
        trace_context: dict[str, str] | None = None,
        user_groups: Collection[str] = (),
    ) -> Enqueued:
        """Queue a message for the bot on the session; idempotent on ``dedup_key``.

        Args:
            trace_context: W3C trace context the turn continues; default: the current span's (the channel's).
            user_groups: The user's groups, as the channel authenticated them (a JWT's claims); tool policies see
                them as ``principal.groups``. Kept with the message, in ``reply_to["caller_groups"]``.

        Raises:
            BotNotFoundError, InvalidInputError, PayloadTooLargeError: nothing was written.
            SessionBusyError: the bot's policy is ``reject`` and the session is busy; nothing was written.
            SessionQuarantinedError: a safety alert quarantined the session (this message's own text may have
                done it); nothing was written.
        """
        bot = self.bots.get(bot_name)
        self.check_input(session_id=session_id, text=text, user_id=user_id, dedup_key=dedup_key)
        await self._screen(bot.name, session_id, text, user_id)
        if user_groups:
            reply_to = {**(reply_to or {}), CALLER_GROUPS_KEY: sorted(user_groups)}
        enqueued = await self.queue.enqueue(
            Inbound(
                session_id=session_id,
                bot=bot.name,
                text=text,
                user_id=user_id,
                dedup_key=dedup_key,
                channel=channel,
                reply_to=reply_to,
                trace_context=trace_context if trace_context is not None else current_trace_context(),
            ),
            policy=bot.double_texting,
        )
        if not enqueued.duplicate:
            self.signals.inbox.fire()
        if enqueued.interrupted_turn_id is not None:
            self.signals.control.fire()
        return enqueued

    async def _screen(self, bot: str, session_id: str, text: str, user_id: str | None) -> None:
        """Quarantine the session when a ``safety`` rule screens the bot's messages and this one is flagged."""
        rule = safety_rule_for(self.settings.alerts, bot) if self.alerts is not None else None
        flag = screen_message(text) if rule is not None else None
        if rule is None or flag is None or self.alerts is None:
            return
        await self.store.ensure_session(session_id, bot=bot, user_id=user_id)
        await self.quarantine_session(session_id)
        await self.alerts.fire(
            NewAlert(
                rule=rule.name,
                kind="safety",
                subject=session_id,
                severity=rule.severity,
                message=(
                    f"session {session_id} of bot {bot} quarantined: an inbound message matched the "
                    f"'{flag.pattern}' screen; release it with `botfactory sessions release {session_id}`"
                ),
                data={
                    "bot": bot,
                    "user_id": user_id,
                    "source": "message_screen",
                    "pattern": flag.pattern,
                    "excerpt": flag.excerpt,
                },
            )
        )
        raise SessionQuarantinedError(
            f"session {session_id!r} is quarantined: the message looks like an attempt to override the bot's "
            f"instructions or extract secrets, and an operator was alerted; they can release it with "
            f"`botfactory sessions release {session_id}`"
        )

    async def quarantine_session(self, session_id: str) -> bool:
        """Stop the session: its messages are refused and its queued ones not claimed until it is released.

        A turn already running finishes. Returns whether the session was not quarantined already.

        Raises:
            SessionNotFoundError: there is no such session.
        """
        changed = await self.queue.set_session_status(session_id, "quarantined")
        if changed:
            logger.warning("session_id=<%s> | session quarantined", session_id)
        return changed

    async def release_session(self, session_id: str) -> bool:
        """Lift a quarantine: the session takes messages again, its queued ones are answered, and its open safety
        alerts are resolved. Returns whether it was quarantined.

        Raises:
            SessionNotFoundError: there is no such session.
        """
        changed = await self.queue.set_session_status(session_id, "active")
        resolved = await self.alert_store.resolve_open(None, session_id, kind="safety")
        self.signals.inbox.fire()
        logger.info(
            "session_id=<%s>, was_quarantined=<%s>, alerts=<%d> | session released", session_id, changed, resolved
        )
        return changed

    async def list_alerts(
        self, *, status: AlertStatus | None = None, kind: str | None = None, limit: int = 100
    ) -> list[AlertRecord]:
        """Alerts, newest first."""
        return await self.alert_store.list(status=status, kind=kind, limit=limit)

    async def resolve_alert(self, alert_id: str) -> AlertRecord:
        """Mark an alert resolved. A safety alert's session stays quarantined: release it with :meth:`release_session`.

        Raises:
            NotFoundError: no alert has that id.
            ConflictError: it was resolved already.
        """
        return await self.alert_store.resolve(alert_id)

    async def session(self, session_id: str) -> SessionView:
        """Everything stored about the session.

        Raises:
            SessionNotFoundError: there is no such session.
        """
        record = await self.store.get_session(session_id)
        queue, messages, inbox, turns, outbox = await asyncio.gather(
            self.queue.queue_state(session_id),
            self.store.list_messages(session_id),
            self.queue.inbox_items(session_id),
            self.store.list_turns(session_id),
            self.queue.outbox_items(session_id, limit=10_000),
        )
        return SessionView(session=record, queue=queue, messages=messages, inbox=inbox, turns=turns, outbox=outbox)

    async def cancel(self, session_id: str) -> CancelResult:
        """Cancel the session's running turn (wherever it runs) and its unanswered messages.

        Raises:
            SessionNotFoundError: there is no such session.
        """
        result = await self.queue.request_cancel(session_id)
        self.signals.control.fire()
        return result

    # Approvals

    async def approvals(
        self, *, status: ApprovalStatus | None = None, bot: str | None = None, limit: int = 100
    ) -> list[ApprovalRecord]:
        """Requests for approval, newest first."""
        return await self.queue.approvals.list(status=status, bot=bot, limit=limit)

    async def approval(self, approval_id: str) -> ApprovalRecord:
        """One request for approval.

        Raises:
            NotFoundError: no request has that id.
        """
        return await self.queue.approvals.get(approval_id)

    def check_approver(self, approval: ApprovalRecord, approver: str, *, trusted: bool = False) -> None:
        """Refuse someone who may not decide this request.

        Args:
            approver: The principal deciding (``slack:T1:U2``, ``key:<id>``, ``cli:<user>``).
            trusted: The caller's credentials allow every decision on this bot (the CLI, an API key for the bot);
                otherwise ``gateway.approvers`` must name the approver.

        Raises:
            ForbiddenError: the approver is the requester, or not an approver of the bot.
        """
        if approval.requester is not None and approver == approval.requester:
            raise ForbiddenError("nobody approves their own request; ask another approver")
        if trusted:
            return
        approvers = self.settings.gateway.approvers
        allowed = set(approvers.get(approval.bot, [])) | set(approvers.get("*", []))
        if approver not in allowed:
            raise ForbiddenError(
                f"{approver} may not decide approvals of bot {approval.bot}; add them to "
                f"[gateway.approvers] {approval.bot} in botfactory.toml"
            )

    async def decide_approval(
        self, approval_id: str, *, approve: bool, by: str, reason: str | None = None
    ) -> ApprovalRecord:
        """Approve or deny a request; the waiting turn resumes on any worker (check the approver first).

        Raises:
            NotFoundError: no request has that id.
            ConflictError: it was decided already, or it expired.
        """
        decided = await self.queue.approvals.decide(approval_id, approve=approve, by=by, reason=reason)
        self.signals.inbox.fire()
        logger.info(
            "approval_id=<%s>, status=<%s>, by=<%s>, tool=<%s> | approval decided",
            approval_id,
            decided.status,
            by,
            decided.tool,
        )
        return decided

    async def watch(
        self,
        session_id: str,
        *,
        after: int = 0,
        follow: bool = True,
        tick_s: float = _TICK_S,
        poll_s: float = _WAIT_POLL_S,
    ) -> AsyncIterator[EventRecord | None]:
        """The session's events after id ``after``, for streams that must show they are alive.

        Without ``follow`` the iteration ends with the last stored event. With it, each new event follows as it
        is stored, and ``None`` comes after every ``tick_s`` without one (send a keep-alive), until the caller
        stops or :meth:`end_streams` is called.
        """
        loop = asyncio.get_running_loop()
        quiet_since = loop.time()
        while True:
            marked = self.signals.events.mark()
            batch = await self.queue.events_after(session_id, after)
            for event in batch:
                after = event.id
                yield event
            if batch:
                quiet_since = loop.time()
                continue
            if not follow or self._streams_ended:
                return
            left = tick_s - (loop.time() - quiet_since)
            if left <= 0:
                yield None
                quiet_since = loop.time()
                continue
            await Pulse.wait(marked, min(poll_s, left))

    def end_streams(self) -> None:
        """End every following :meth:`watch` once it has sent what is stored (the server is shutting down)."""
        self._streams_ended = True
        self.signals.events.fire()

    async def list_sessions(
        self, *, active: bool = False, bot: str | None = None, limit: int = 100
    ) -> list[SessionSummary]:
        """Sessions, most recently active first.

        Args:
            active: Only sessions with queued or running work, or a message within ``runtime.idle_timeout_s``.
            bot: Only this bot's sessions.
        """
        since = self._clock() - self.settings.runtime.idle_timeout_s if active else None
        return await self.queue.list_sessions(active_since=since, bot=bot, limit=limit)

    @staticmethod
    def summary_to_dict(summary: SessionSummary) -> dict[str, Any]:
        """JSON-ready form of one session of :meth:`list_sessions`, for the API and the CLI."""
        return {
            "id": summary.id,
            "bot": summary.bot,
            "user_id": summary.user_id,
            "state": summary.state,
            "pending": summary.pending,
            "running_turn_id": summary.turn_id,
            "created_at": summary.created_at,
            "updated_at": summary.updated_at,
        }

    async def dead_letters(self, *, bot: str | None = None, limit: int = 100) -> list[InboxItem]:
        """Messages that failed every attempt, newest first, with the error in ``InboxItem.error``."""
        return await self.queue.dead_letters(bot=bot, limit=limit)

    async def retry_dead_letter(self, message_id: str) -> InboxItem:
        """Queue a dead message's text again, as a new message at the end of its session; returns the dead one.

        Raises:
            NotFoundError: no dead message has that id.
        """
        dead = await self.queue.retry_dead_letter(message_id)
        self.signals.inbox.fire()
        return dead

    async def discard_dead_letter(self, message_id: str) -> InboxItem:
        """Drop a dead message from the dead letters for good; returns it.

        Raises:
            NotFoundError: no dead message has that id.
        """
        return await self.queue.discard_dead_letter(message_id)

    async def set_kill_switch(self, kind: str, name: str, *, on: bool, reason: str | None = None) -> bool:
        """Switch a bot, agent or tool off (``on=True``) or back on, on every worker; returns whether it changed.

        Raises:
            InvalidInputError: unknown kind or empty name.
        """
        return await self.controls.set(kind, name, on=on, reason=reason)

    async def kill_switches(self) -> dict[tuple[str, str], str | None]:
        """Every switch that is on, ``(kind, name) -> reason``, read from the store now."""
        return await self.queue.kill_switches()

    async def invoke(
        self,
        bot_name: str,
        *,
        session_id: str,
        text: str,
        user_id: str | None = None,
        dedup_key: str | None = None,
        on_event: EventCallback | None = None,
        timeout_s: float | None = None,
        user_groups: Collection[str] = (),
    ) -> InvokeResult:
        """Enqueue a message and wait for the turn that answers it; stream its events to ``on_event``.

        A worker must be running (in this process or another). A limit reached mid-turn ends the turn as
        ``failed`` with a reply that says why.

        Raises:
            BotNotFoundError, InvalidInputError, PayloadTooLargeError, SessionBusyError: nothing was written.
            StoreError: no worker answered within ``timeout_s`` (the message stays queued).
        """
        timeout = self.settings.runtime.invoke_timeout_s if timeout_s is None else timeout_s
        after = await self.queue.last_event_id(session_id)
        enqueued = await self.enqueue(
            bot_name, session_id=session_id, text=text, user_id=user_id, dedup_key=dedup_key, user_groups=user_groups
        )
        if enqueued.duplicate:  # its turn may have started (or ended) long ago: read the stream from the start
            after = 0
        try:
            async with asyncio.timeout(timeout):
                return await self._wait_for_reply(enqueued, after, on_event)
        except TimeoutError:
            raise StoreError(
                f"no reply within {timeout:g} s: is a worker running (`botfactory worker`)? The message stays queued "
                f"as {enqueued.message_id}; follow it at /v1/sessions/{session_id}",
                retryable=True,
            ) from None

    async def _wait_for_reply(self, enqueued: Enqueued, after: int, on_event: EventCallback | None) -> InvokeResult:
        session_id = enqueued.session_id
        turn_id: str | None = None
        while True:
            marked = self.signals.events.mark()
            batch = await self.queue.events_after(session_id, after)
            for event in batch:
                after = event.id
                if event.type == "turn_started" and enqueued.message_id in event.data.get("message_ids", ()):
                    turn_id = event.turn_id
                if turn_id is None or event.turn_id != turn_id:
                    continue
                if on_event is not None and event.type not in ("turn_started", "turn_finished"):
                    await on_event(event.data)
                if event.type == "turn_finished":
                    status = str(event.data.get("status"))
                    if status == "interrupted":  # the message is answered by the next turn, with the newer ones
                        turn_id = None
                        continue
                    return InvokeResult(
                        session_id=session_id,
                        turn_id=event.turn_id,
                        status=status,
                        reply=str(event.data.get("reply") or ""),
                        error_code=event.data.get("error_code"),
                        message_id=enqueued.message_id,
                    )
            if not batch:
                ended = await self._ended_without_turn(enqueued)
                if ended is not None:
                    return ended
                await Pulse.wait(marked, _WAIT_POLL_S)

    async def _ended_without_turn(self, enqueued: Enqueued) -> InvokeResult | None:
        items = await self.queue.inbox_items(enqueued.session_id)
        item = next((i for i in items if i.message_id == enqueued.message_id), None)
        if item is None or item.status not in ("cancelled", "dead"):
            return None
        return InvokeResult(
            session_id=enqueued.session_id,
            turn_id=item.turn_id,
            status="cancelled" if item.status == "cancelled" else "failed",
            reply="",
            error_code=item.status if item.status == "cancelled" else "dead_letter",
            message_id=enqueued.message_id,
        )
