"""Cleanup jobs: stored spans older than ``tracing.retention_days``, audit rows older than
``gateway.audit_retention_s``, rate-limit buckets idle for a day or more (no limit changes: an idle bucket is full).

They run in the process that runs the worker (``botfactory up`` or ``botfactory worker``), once at start and then
every ``interval_s`` (an hour by default). Several workers on one database each run them; a purge is one ``DELETE``
by time, so running it twice costs nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Final

from sqlalchemy.ext.asyncio import AsyncEngine

from botfactory.errors import BotfactoryError
from botfactory.store import AuditStore, RateBucketStore, SpanStore

__all__ = ["AuditRetention", "BucketRetention", "SpanRetention"]

logger = logging.getLogger(__name__)

_DAY_S: Final = 86_400.0


class _PeriodicPurge:
    """Runs :meth:`run_once` at start and every ``interval_s``; a failure is logged and retried next time."""

    what = "rows"

    def __init__(self, *, interval_s: float) -> None:
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        self.purged = 0
        """Rows deleted since the job started."""

    async def _purge(self) -> int:
        raise NotImplementedError

    async def run_once(self) -> int:
        """Delete what is past retention now; returns how many rows were deleted."""
        deleted = await self._purge()
        self.purged += deleted
        if deleted:
            logger.info("rows=<%d> | %s past retention deleted", deleted, self.what)
        return deleted

    def start(self) -> None:
        """Run :meth:`run_once` now and every ``interval_s`` on the running loop, until :meth:`aclose`."""
        self._task = asyncio.get_running_loop().create_task(self._loop(), name=f"botfactory-retention-{self.what}")

    async def aclose(self) -> None:
        """Stop the job (a purge under way is cancelled; its transaction rolls back)."""
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception as exc:  # the job must outlive a busy or unreachable database
                message = exc.message if isinstance(exc, BotfactoryError) else repr(exc)
                logger.warning("error=<%s> | %s retention purge failed; retrying later", message, self.what)
            await asyncio.sleep(self.interval_s)


class SpanRetention(_PeriodicPurge):
    """Deletes spans older than the retention period, periodically.

    Args:
        engine: The store's engine (schema 0007 or later).
        retention_days: Spans that started longer ago than this are deleted.
        interval_s: Time between two purges.
        clock: Epoch seconds ("now" for the cutoff); tests inject one.
    """

    what = "stored spans"

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        retention_days: float,
        interval_s: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(interval_s=interval_s)
        self.spans = SpanStore(engine, clock=clock)
        self.retention_s = retention_days * _DAY_S

    async def _purge(self) -> int:
        return await self.spans.purge(older_than_s=self.retention_s)


class AuditRetention(_PeriodicPurge):
    """Deletes audit rows older than ``gateway.audit_retention_s`` (90 days by default), periodically.

    Args:
        engine: The store's engine (schema 0005 or later).
        retention_s: Rows of calls decided longer ago than this are deleted.
        interval_s: Time between two purges.
        clock: Epoch seconds ("now" for the cutoff); tests inject one.
    """

    what = "audit rows"

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        retention_s: float,
        interval_s: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(interval_s=interval_s)
        self.audit = AuditStore(engine, clock=clock)
        self.retention_s = retention_s

    async def _purge(self) -> int:
        return await self.audit.purge(older_than_s=self.retention_s)


class BucketRetention(_PeriodicPurge):
    """Deletes rate-limit buckets idle longer than ``idle_s``, periodically (the table gains a row per user).

    Args:
        engine: The store's engine (schema 0005 or later).
        idle_s: Buckets not taken from for this long are deleted; at least the longest refill time of any configured
            limit (:attr:`RateLimitSettings.longest_refill_s`), so no limit changes.
        interval_s: Time between two purges.
        clock: Epoch seconds; tests inject one.
    """

    what = "idle rate-limit buckets"

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        idle_s: float,
        interval_s: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(interval_s=interval_s)
        self.buckets = RateBucketStore(engine, clock=clock)
        self.idle_s = idle_s

    async def _purge(self) -> int:
        return await self.buckets.purge_idle(idle_s=self.idle_s)

    async def aclose(self) -> None:
        """Stop the job and close its connection."""
        await super().aclose()
        await self.buckets.close()
