"""Delivering replies: each channel that sends replies out (Slack, webhooks) registers a :class:`Deliverer`.

The dispatcher takes due outbox rows, schedules the next attempt *before* sending (so a crash mid-send is
retried), skips replies made stale by a newer message (``coalesce`` and ``interrupt`` bots), and records the
outcome. ``deliver`` receives the outbox row; its id is stable across attempts, for channels that can
deduplicate on it. Replies to the HTTP API need no delivery and never reach here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Final, Protocol

from botfactory.agents import BotRegistry
from botfactory.errors import BotfactoryError
from botfactory.runtime.signals import Pulse, Signals
from botfactory.store import OutboxRecord, RuntimeStore

__all__ = ["Deliverer", "DeliveryError", "OutboxDispatcher"]

logger = logging.getLogger(__name__)

_MAX_ATTEMPTS: Final = 8
_BACKOFF_BASE_S: Final = 1.0
_BACKOFF_MAX_S: Final = 300.0
_IN_FLIGHT_S: Final = 60.0


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
        if self._stale(taken) and await self._store.has_newer_messages(taken.session_id, taken.turn_id):
            await self._store.end_delivery(taken.id, status="stale")
            logger.info(
                "session_id=<%s>, turn_id=<%s> | reply is stale; not delivered", taken.session_id, taken.turn_id
            )
            return
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
                return
            delay = exc.retry_after_s or min(_BACKOFF_MAX_S, _BACKOFF_BASE_S * 2 ** (taken.attempts - 1))
            await self._store.end_delivery(taken.id, status="pending", error=exc.message, retry_at=_now_plus(delay))
            return
        await self._store.end_delivery(taken.id, status="delivered")

    def _stale(self, reply: OutboxRecord) -> bool:
        return reply.bot in self._bots and self._bots.get(reply.bot).double_texting in ("coalesce", "interrupt")


def _now_plus(delay: float) -> float:
    import time

    return time.time() + delay
