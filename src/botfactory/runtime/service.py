"""What channels, the API and the CLI ask of the runtime: enqueue, wait for a reply, watch, cancel, operate.

Nothing here runs agents: that is the :class:`~botfactory.runtime.worker.Worker`'s job, in this process
(``botfactory up``) or in others (``botfactory worker``). Everything goes through the store, so the answers are
the same whichever process asks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from botfactory.agents import BotRegistry
from botfactory.config import Settings
from botfactory.errors import InvalidInputError, PayloadTooLargeError, StoreError
from botfactory.runtime.limits import Controls
from botfactory.runtime.signals import Pulse, Signals
from botfactory.store import (
    API_CHANNEL,
    CancelResult,
    Enqueued,
    EventRecord,
    Inbound,
    InboxItem,
    MessageRecord,
    OutboxRecord,
    QueueState,
    RuntimeStore,
    SessionRecord,
    Store,
    TurnRecord,
)

__all__ = ["EventCallback", "InvokeResult", "Runtime", "SessionView"]

logger = logging.getLogger(__name__)

EventCallback = Callable[[dict[str, Any]], Awaitable[None]]
_MAX_KEY_CHARS: Final = 256
_WAIT_POLL_S: Final = 0.5


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
            "state": _state(queue),
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
    if queue is None or (queue.turn_id is None and queue.pending == 0):
        return "idle"
    if queue.turn_id is not None and queue.leased:
        return "running"
    return "waiting"


class Runtime:
    """The runtime as channels see it.

    Args:
        settings: Limits on input and the runtime settings.
        store: Sessions, messages and turns.
        queue: The runtime's queue operations.
        bots: The bots that can be addressed.
        signals: This process's wake-ups.
        controls: Kill switches.
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
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.queue = queue
        self.bots = bots
        self.signals = signals
        self.controls = controls
        self._clock = clock

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
    ) -> Enqueued:
        """Queue a message for the bot on the session; idempotent on ``dedup_key``.

        Raises:
            BotNotFoundError, InvalidInputError, PayloadTooLargeError: nothing was written.
            SessionBusyError: the bot's policy is ``reject`` and the session is busy; nothing was written.
        """
        bot = self.bots.get(bot_name)
        self.check_input(session_id=session_id, text=text, user_id=user_id, dedup_key=dedup_key)
        enqueued = await self.queue.enqueue(
            Inbound(
                session_id=session_id,
                bot=bot.name,
                text=text,
                user_id=user_id,
                dedup_key=dedup_key,
                channel=channel,
                reply_to=reply_to,
                trace_context=trace_context,
            ),
            policy=bot.double_texting,
        )
        if not enqueued.duplicate:
            self.signals.inbox.fire()
        if enqueued.interrupted_turn_id is not None:
            self.signals.control.fire()
        return enqueued

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

    async def events(
        self, session_id: str, *, after: int = 0, poll_s: float = _WAIT_POLL_S
    ) -> AsyncIterator[EventRecord]:
        """The session's events after id ``after``, then each new one as it is stored, until the caller stops."""
        while True:
            marked = self.signals.events.mark()
            batch = await self.queue.events_after(session_id, after)
            for event in batch:
                after = event.id
                yield event
            if not batch:
                await Pulse.wait(marked, poll_s)

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
        enqueued = await self.enqueue(bot_name, session_id=session_id, text=text, user_id=user_id, dedup_key=dedup_key)
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
