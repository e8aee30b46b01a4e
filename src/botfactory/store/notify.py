"""Learning that another process committed something: PostgreSQL ``LISTEN``, or SQLite's ``data_version``.

A :class:`ChangeFeed` calls back with the notification channel and payload. On PostgreSQL that is exactly what
was notified (see the channels in :mod:`botfactory.store.queue`). SQLite has no notifications; a thread reads
``PRAGMA data_version`` (a counter in shared memory, no disk read) every few milliseconds and reports any commit
by another connection on every channel, with an empty payload.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable, Sequence

import sqlalchemy as sa

from botfactory.store.engine import normalize_url

__all__ = ["ChangeFeed", "NotificationHandler"]

logger = logging.getLogger(__name__)

NotificationHandler = Callable[[str, str], None]
"""Called on the event loop with ``(channel, payload)``."""


class ChangeFeed:
    """Delivers other processes' notifications to ``handler`` until closed. Start it with :meth:`start`."""

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    async def start(
        cls, url: str, channels: Sequence[str], handler: NotificationHandler, *, sqlite_poll_s: float = 0.005
    ) -> ChangeFeed:
        """Listen on ``channels`` of the database at ``url``."""
        feed = cls()
        parsed = normalize_url(url, asyncio=False)
        loop = asyncio.get_running_loop()
        if parsed.get_backend_name() == "postgresql":
            conninfo = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
            feed._task = loop.create_task(_listen(conninfo, channels, handler), name="botfactory-listen")
        else:
            database = parsed.database or ""
            feed._thread = threading.Thread(
                target=_poll_sqlite,
                args=(database, channels, handler, loop, feed._stop, sqlite_poll_s),
                name="botfactory-sqlite-feed",
                daemon=True,
            )
            feed._thread.start()
        return feed

    async def close(self) -> None:
        """Stop listening."""
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)


async def _listen(conninfo: str, channels: Sequence[str], handler: NotificationHandler) -> None:
    import psycopg  # the postgres extra; the URL was already checked to need it

    delay = 0.5
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as connection:
                for channel in channels:
                    await connection.execute(sa.text(f"LISTEN {channel}").text)
                delay = 0.5
                # Reconnecting may have missed notifications: tell everyone to look.
                for channel in channels:
                    handler(channel, "")
                async for notification in connection.notifies():
                    handler(notification.channel, notification.payload)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the server restarted or the network failed; pollers cover the gap
            logger.warning("error=<%s> | notification listener lost its connection; reconnecting", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


def _poll_sqlite(
    database: str,
    channels: Sequence[str],
    handler: NotificationHandler,
    loop: asyncio.AbstractEventLoop,
    stop: threading.Event,
    interval_s: float,
) -> None:
    connection = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    try:
        last = connection.execute("PRAGMA data_version").fetchone()[0]
        while not stop.wait(interval_s):
            try:
                version = connection.execute("PRAGMA data_version").fetchone()[0]
            except sqlite3.Error as exc:
                logger.warning("error=<%s> | cannot read the SQLite data version", exc)
                continue
            if version != last:
                last = version
                for channel in channels:
                    with contextlib.suppress(RuntimeError):  # the loop closed while we were reading
                        loop.call_soon_threadsafe(handler, channel, "")
    finally:
        connection.close()
