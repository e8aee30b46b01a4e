"""The span store's cleanup job: deletes stored spans older than ``tracing.retention_days``.

It runs in the process that runs the worker (``botfactory up`` or ``botfactory worker``), once at start and then
every ``interval_s`` (an hour by default). Several workers on one database each run it; a purge is one ``DELETE``
by start time, so running it twice costs nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Final

from sqlalchemy.ext.asyncio import AsyncEngine

from botfactory.errors import BotfactoryError
from botfactory.store import SpanStore

__all__ = ["SpanRetention"]

logger = logging.getLogger(__name__)

_DAY_S: Final = 86_400.0


class SpanRetention:
    """Deletes spans older than the retention period, periodically.

    Args:
        engine: The store's engine (schema 0007 or later).
        retention_days: Spans that started longer ago than this are deleted.
        interval_s: Time between two purges.
        clock: Epoch seconds ("now" for the cutoff); tests inject one.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        retention_days: float,
        interval_s: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.spans = SpanStore(engine, clock=clock)
        self.retention_s = retention_days * _DAY_S
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        self.purged = 0
        """Spans deleted since the job started."""

    async def run_once(self) -> int:
        """Delete the spans past retention now; returns how many were deleted."""
        deleted = await self.spans.purge(older_than_s=self.retention_s)
        self.purged += deleted
        if deleted:
            logger.info("spans=<%d> | stored spans past retention deleted", deleted)
        return deleted

    def start(self) -> None:
        """Run :meth:`run_once` now and every ``interval_s`` on the running loop, until :meth:`aclose`."""
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="botfactory-span-retention")

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
                logger.warning("error=<%s> | span retention purge failed; retrying later", message)
            await asyncio.sleep(self.interval_s)
