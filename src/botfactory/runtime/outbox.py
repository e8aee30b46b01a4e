"""Delivering replies: each channel that sends replies out (Slack, webhooks) registers a :class:`Deliverer`.

The dispatcher takes due outbox rows, schedules the next attempt *before* sending (so a crash mid-send is
retried), skips replies made stale by a newer message (``coalesce`` and ``interrupt`` bots), and records the
outcome. ``deliver`` receives the outbox row; its id is stable across attempts, for channels that can
deduplicate on it. Replies to the HTTP API need no delivery and never reach here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping
from typing import Any, Final, Protocol, runtime_checkable

from opentelemetry.trace import SpanKind, Status, StatusCode

from botfactory.agents import BotRegistry
from botfactory.errors import BotfactoryError, LeaseLostError
from botfactory.observability import GEN_AI_CONVERSATION_ID, context_from, current_trace_context, tracer
from botfactory.runtime.signals import Pulse, Signals
from botfactory.store import ApprovalRecord, Claim, InboxItem, OutboxRecord, RuntimeStore

__all__ = [
    "PLACEHOLDER_KEY",
    "TRACE_CONTEXT_KEY",
    "ApprovalDeliverer",
    "ApprovalNotices",
    "Deliverer",
    "DeliveryError",
    "OutboxDispatcher",
    "PlaceholderDeliverer",
    "ReplyPlaceholders",
    "with_trace_context",
]

logger = logging.getLogger(__name__)

_MAX_ATTEMPTS: Final = 8
_BACKOFF_BASE_S: Final = 1.0
_BACKOFF_MAX_S: Final = 300.0
_IN_FLIGHT_S: Final = 60.0
PLACEHOLDER_KEY: Final = "placeholder"
"""The ``reply_to`` key under which a turn's placeholder (e.g. Slack's "thinking…" message) is kept."""
TRACE_CONTEXT_KEY: Final = "trace_context"
"""The ``reply_to`` key of a reply's W3C trace context: its delivery is a span of the turn's trace."""
_TRACER = tracer("runtime")


def with_trace_context(claim: Claim) -> Claim:
    """The claim with the current trace context in its last input's ``reply_to`` (which the reply is sent to)."""
    last = claim.inputs[-1] if claim.inputs else None
    carrier = current_trace_context() if last is not None and last.reply_to is not None else None
    if last is None or last.reply_to is None or carrier is None:
        return claim
    traced = dataclasses.replace(last, reply_to={**last.reply_to, TRACE_CONTEXT_KEY: carrier})
    return dataclasses.replace(claim, inputs=(*claim.inputs[:-1], traced))


class DeliveryError(BotfactoryError):
    """A delivery attempt failed; ``retry_after_s`` (e.g. from HTTP 429 ``Retry-After``) overrides the backoff."""

    code = "delivery_failed"
    retryable = True

    def __init__(self, message: str, *, retry_after_s: float | None = None, permanent: bool = False) -> None:
        super().__init__(message, retryable=not permanent)
        self.retry_after_s = retry_after_s


class Deliverer(Protocol):
    """Sends one reply to its channel; raise :class:`DeliveryError` to retry later."""

    async def deliver(self, reply: OutboxRecord) -> None:
        """Post ``reply.text`` to ``reply.reply_to``."""


@runtime_checkable
class PlaceholderDeliverer(Protocol):
    """A deliverer that shows a placeholder while a turn runs (optional; Slack's "thinking…").

    The worker calls :meth:`turn_started` when it starts a turn that has no placeholder yet and stores what it
    returns under ``reply_to["placeholder"]``; ``deliver`` then replaces the placeholder with the reply.
    """

    async def turn_started(self, item: InboxItem) -> dict[str, Any] | None:
        """Show the placeholder for the turn answering ``item``; return how to find it, or ``None``. Never raises."""

    async def turn_abandoned(self, reply_to: dict[str, Any]) -> None:
        """Remove the placeholder of a turn that will post no reply (stale, cancelled, dead). Never raises."""


@runtime_checkable
class ApprovalDeliverer(Protocol):
    """A deliverer that can show a request for approval where the conversation is (optional; Slack's buttons)."""

    async def request_approval(self, item: InboxItem, approval: ApprovalRecord) -> dict[str, Any] | None:
        """Show the request in the conversation of ``item``; return where it is (to update it), or ``None``.

        Never raises: the request stays decidable through the API and the CLI whatever happens here.
        """


class ApprovalNotices:
    """The worker's side of approvals: show each request once in its conversation, if the channel can."""

    def __init__(self, store: RuntimeStore, deliverers: Mapping[str, Deliverer]) -> None:
        self._store = store
        self._deliverers = {
            channel: deliverer for channel, deliverer in deliverers.items() if isinstance(deliverer, ApprovalDeliverer)
        }

    async def notify(self, claim: Claim, approval_id: str) -> None:
        """Post the request where the turn's last message came from, unless it was posted already."""
        item = claim.inputs[-1] if claim.inputs else None
        deliverer = self._deliverers.get(item.channel) if item is not None else None
        if item is None or deliverer is None:
            return
        approval = await self._store.approvals.get(approval_id)
        if approval.notice is not None or approval.status != "pending":
            return
        notice = await deliverer.request_approval(item, approval)
        if notice is not None:
            await self._store.approvals.set_notice(approval_id, notice)


class ReplyPlaceholders:
    """The worker's side of placeholders: post one when a turn starts, clean it up when no reply will replace it."""

    def __init__(self, store: RuntimeStore, deliverers: Mapping[str, Deliverer]) -> None:
        self._store = store
        self._deliverers = {
            channel: deliverer
            for channel, deliverer in deliverers.items()
            if isinstance(deliverer, PlaceholderDeliverer)
        }

    async def begin(self, claim: Claim) -> Claim:
        """Make sure the turn's last input carries a placeholder; returns the claim as stored.

        A resumed turn (or one restarted with more messages) reuses the placeholder it has, so none is posted twice.

        Raises:
            LeaseLostError: the session was taken over while the placeholder was recorded.
        """
        if not claim.inputs or (deliverer := self._deliverers.get(claim.inputs[-1].channel)) is None:
            return claim
        last = claim.inputs[-1]
        held = [i.reply_to[PLACEHOLDER_KEY] for i in claim.inputs if i.reply_to and _placeholder(i.reply_to)]
        existing = held[0] if held else None
        if existing is not None and _placeholder(last.reply_to):
            return claim
        if existing is None:
            try:
                existing = await deliverer.turn_started(last)
            except Exception:  # a placeholder is a nicety: it never fails the turn
                logger.warning("session_id=<%s> | placeholder failed", claim.session_id, exc_info=True)
            if existing is None:
                return claim
        reply_to = {**(last.reply_to or {}), PLACEHOLDER_KEY: existing}
        try:
            await self._store.set_reply_placeholder(claim.lease, last.message_id, reply_to)
        except LeaseLostError:
            raise
        except BotfactoryError as exc:
            logger.warning("session_id=<%s>, error=<%s> | placeholder not recorded", claim.session_id, exc.message)
            return claim
        inputs = (*claim.inputs[:-1], dataclasses.replace(last, reply_to=reply_to))
        return dataclasses.replace(claim, inputs=inputs)

    async def end(self, claim: Claim, status: str) -> None:
        """After the turn ended with ``status``: remove its placeholder when no reply of it will replace it."""
        if status == "interrupted" or not claim.inputs or not _placeholder(claim.inputs[-1].reply_to):
            return  # an interrupted turn's messages go back to the queue, placeholder included
        deliverer = self._deliverers.get(claim.inputs[-1].channel)
        if deliverer is None:
            return
        try:
            replies = await self._store.outbox_items(claim.session_id, limit=1000)
            if any(r.turn_id == claim.turn.id and r.status in ("pending", "delivered") for r in replies):
                return
            await deliverer.turn_abandoned(dict(claim.inputs[-1].reply_to or {}))
        except Exception:  # cleanup is best effort
            logger.warning("session_id=<%s> | placeholder cleanup failed", claim.session_id, exc_info=True)


def _placeholder(reply_to: dict[str, Any] | None) -> bool:
    return bool(reply_to and reply_to.get(PLACEHOLDER_KEY))


class OutboxDispatcher:
    """Delivers due replies for the channels it has deliverers for, until stopped."""

    def __init__(
        self,
        *,
        store: RuntimeStore,
        bots: BotRegistry,
        deliverers: Mapping[str, Deliverer],
        signals: Signals,
        poll_s: float = 1.0,
    ) -> None:
        self._store = store
        self._bots = bots
        self._deliverers = dict(deliverers)
        self._signals = signals
        self._poll_s = poll_s
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start delivering in the background."""
        if self._deliverers:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="botfactory-outbox")

    async def stop(self) -> None:
        """Stop after the current delivery."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            marked = self._signals.events.mark()
            try:
                delivered = await self.deliver_due()
            except BotfactoryError as exc:
                logger.warning("error=<%s> | outbox pass failed", exc.message)
                delivered = 0
            if delivered == 0:
                await Pulse.wait(marked, self._poll_s)

    async def deliver_due(self) -> int:
        """One pass over the due replies; returns how many were handled."""
        due = await self._store.due_deliveries(sorted(self._deliverers))
        for reply in due:
            await self._deliver_one(reply)
        return len(due)

    async def _deliver_one(self, reply: OutboxRecord) -> None:
        taken = await self._store.begin_delivery(reply.id, retry_in_s=_IN_FLIGHT_S)
        if taken is None:
            return
        carrier = (taken.reply_to or {}).get(TRACE_CONTEXT_KEY)
        attributes: dict[str, str | int] = {
            GEN_AI_CONVERSATION_ID: taken.session_id,
            "botfactory.turn.id": taken.turn_id,
            "botfactory.bot": taken.bot,
            "botfactory.channel": taken.channel,
            "botfactory.delivery.attempt": taken.attempts,
        }
        with _TRACER.start_as_current_span(
            "deliver reply",
            context=context_from(carrier if isinstance(carrier, dict) else None),
            kind=SpanKind.CLIENT,
            attributes=attributes,
        ) as span:
            outcome = await self._attempt(taken)
            span.set_attribute("botfactory.delivery.outcome", outcome)
            if outcome in ("retry", "failed"):
                span.set_status(Status(StatusCode.ERROR))

    async def _attempt(self, taken: OutboxRecord) -> str:
        """One delivery attempt of a taken reply; returns ``delivered``, ``stale``, ``retry`` or ``failed``."""
        if self._stale(taken) and await self._store.has_newer_messages(taken.session_id, taken.turn_id):
            await self._store.end_delivery(taken.id, status="stale")
            deliverer = self._deliverers[taken.channel]
            if isinstance(deliverer, PlaceholderDeliverer) and _placeholder(taken.reply_to):
                await deliverer.turn_abandoned(dict(taken.reply_to or {}))
            logger.info(
                "session_id=<%s>, turn_id=<%s> | reply is stale; not delivered", taken.session_id, taken.turn_id
            )
            return "stale"
        try:
            await self._deliverers[taken.channel].deliver(taken)
        except Exception as raised:
            exc = raised if isinstance(raised, DeliveryError) else None
            if exc is None:  # a channel's bug fails this attempt, not the dispatcher and every later reply
                logger.warning(
                    "outbox_id=<%s>, channel=<%s> | deliverer raised", taken.id, taken.channel, exc_info=True
                )
                exc = DeliveryError(f"the {taken.channel} channel failed ({type(raised).__name__})")
            if not exc.retryable or taken.attempts >= _MAX_ATTEMPTS:
                await self._store.end_delivery(taken.id, status="failed", error=exc.message)
                logger.warning("outbox_id=<%s>, error=<%s> | delivery failed for good", taken.id, exc.message)
                return "failed"
            delay = exc.retry_after_s or min(_BACKOFF_MAX_S, _BACKOFF_BASE_S * 2 ** (taken.attempts - 1))
            await self._store.end_delivery(taken.id, status="pending", error=exc.message, retry_at=_now_plus(delay))
            return "retry"
        await self._store.end_delivery(taken.id, status="delivered")
        return "delivered"

    def _stale(self, reply: OutboxRecord) -> bool:
        return reply.bot in self._bots and self._bots.get(reply.bot).double_texting in ("coalesce", "interrupt")


def _now_plus(delay: float) -> float:
    import time

    return time.time() + delay
