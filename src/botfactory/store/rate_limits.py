"""Token buckets in the ``rate_buckets`` table, shared by every worker on the same database.

A take reads, refills and decrements all of its buckets in one transaction, so two workers can never both spend
a bucket's last token. On SQLite the transaction begins with ``BEGIN IMMEDIATE`` (one writer at a time); on
PostgreSQL missing rows are inserted first and then every row is locked with ``FOR UPDATE``, always in key order,
so two takes over overlapping buckets wait for each other instead of deadlocking.
"""

from __future__ import annotations

import asyncio
import functools
import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine

from botfactory.errors import ConfigError
from botfactory.store.engine import WRITE_OPTIONS, create_sync_engine, database_error
from botfactory.store.schema import rate_buckets
from botfactory.store.writer import BatchWriter

__all__ = ["BucketSpec", "RateBucketStore"]

_MAX_KEY = 512
"""Length of ``rate_buckets.key``."""


@dataclass(frozen=True, kw_only=True)
class BucketSpec:
    """One token bucket a call takes a token from.

    Attributes:
        key: The row's key, e.g. ``tool:github.search``; buckets with the same key are the same bucket.
        per_second: Tokens added back per second.
        capacity: The most tokens the bucket holds; a bucket seen for the first time starts full.
    """

    key: str
    per_second: float
    capacity: float

    def __post_init__(self) -> None:
        if not 0 < len(self.key) <= _MAX_KEY:
            raise ConfigError(
                f"a rate-limit bucket key must be 1 to {_MAX_KEY} characters, not {len(self.key)}; "
                "use shorter tool, bot or user names"
            )
        if not (math.isfinite(self.per_second) and self.per_second > 0 and self.capacity >= 1):
            raise ConfigError(
                f"rate-limit bucket {self.key} needs a refill rate above 0 and a capacity of at least 1 "
                f"(got {self.per_second}/s, {self.capacity}); fix [gateway.rate_limits] in botfactory.toml"
            )


def _unique(buckets: Sequence[BucketSpec]) -> list[BucketSpec]:
    """The buckets in key order, each key once (the first spec given for it wins)."""
    by_key: dict[str, BucketSpec] = {}
    for bucket in buckets:
        by_key.setdefault(bucket.key, bucket)
    return [by_key[key] for key in sorted(by_key)]


class RateBucketStore:
    """Takes tokens from buckets kept in the ``rate_buckets`` table.

    A take is one transaction run whole on a dedicated thread with its own connection: one hop from the event
    loop instead of one per statement (measured on SQLite: about 10 ms per take through the async driver under
    load, well under 1 ms this way).

    Args:
        engine: An async engine on SQLite or PostgreSQL whose schema is at revision 0005 or later; its URL is used
            to open the thread's own connection.
        clock: Current time in epoch seconds. Workers on different hosts share buckets, so it must be a wall clock
            (a monotonic clock differs per process); tests inject one.
    """

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], float] = time.time) -> None:
        self._url = engine.url
        self._clock = clock
        self._engine: sa.Engine | None = None
        self._local = threading.local()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="botfactory-ratelimit")
        self._writer: BatchWriter | None = None

    def write_through(self, writer: BatchWriter | None) -> None:
        """Take tokens in ``writer``'s transactions (the runtime's) instead of on this store's own connection;
        ``None``: on the own connection again (before that writer closes).

        On SQLite the process's own connection and the runtime's writer wait on one file lock, and the loser sleeps
        before retrying: measured on the gateway bench, a take then cost over 1 ms. Through the writer, takes join
        its batches (each batch is one ``BEGIN IMMEDIATE`` transaction, so takes in it still see each other); on
        PostgreSQL each commits alone, its rows locked in key order as on the own connection.
        """
        self._writer = writer

    async def take(self, buckets: Sequence[BucketSpec]) -> float:
        """Take one token from every bucket, or from none.

        Each bucket is first refilled for the time since it was last written, up to its capacity. If every bucket
        then holds at least one token, one is taken from each; otherwise nothing changes.

        Returns:
            ``0.0`` when the tokens were taken, else the seconds until every bucket will hold a token again.

        Raises:
            StoreError: The database failed; no token was taken.
        """
        specs = _unique(buckets)
        if not specs:
            return 0.0
        now = self._clock()
        writer = self._writer
        if writer is not None:
            take = functools.partial(self._take_in, specs=specs, now=now)
            return await writer.write(take, alone=writer.dialect_name == "postgresql")
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._take, specs, now)

    async def purge_idle(self, *, idle_s: float) -> int:
        """Delete buckets nobody took from for ``idle_s`` seconds; how many were deleted.

        A bucket idle longer than it takes to refill is full, exactly as a bucket that does not exist yet, so with
        ``idle_s`` at least the longest refill time this changes no limit, only the table's size.
        """
        cutoff = self._clock() - idle_s
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._purge, cutoff)

    def _purge(self, cutoff: float) -> int:
        connection = self._connection()
        try:
            with connection.begin():
                deleted = connection.execute(sa.delete(rate_buckets).where(rate_buckets.c.updated_at < cutoff))
        except sa.exc.DBAPIError as exc:
            self._local.connection = None
            connection.invalidate()
            raise database_error(exc, self._url, doing="purging idle rate-limit buckets") from exc
        return int(deleted.rowcount)

    async def close(self) -> None:
        """Close the thread's connection and stop the thread."""
        await asyncio.get_running_loop().run_in_executor(self._thread, self._close)
        self._thread.shutdown(wait=True)

    def _close(self) -> None:
        connection: sa.Connection | None = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None
        if self._engine is not None:
            self._engine.dispose()

    def _connection(self) -> sa.Connection:
        connection: sa.Connection | None = getattr(self._local, "connection", None)
        if connection is None or connection.closed or connection.invalidated:
            if self._engine is None:
                self._engine = create_sync_engine(self._url.render_as_string(hide_password=False))
            connection = self._engine.connect().execution_options(**WRITE_OPTIONS)
            self._local.connection = connection
        return connection

    def _take(self, specs: list[BucketSpec], now: float) -> float:
        doing = "taking rate-limit tokens"
        connection = self._connection()
        try:
            with connection.begin():
                return self._take_in(connection, specs, now)
        except sa.exc.DBAPIError as exc:
            if not isinstance(exc, sa.exc.IntegrityError):
                self._local.connection = None
                connection.invalidate()
            raise database_error(exc, self._url, doing=doing) from exc

    @staticmethod
    def _take_in(connection: sa.Connection, specs: list[BucketSpec], now: float) -> float:
        keys = [spec.key for spec in specs]
        query = sa.select(rate_buckets).where(rate_buckets.c.key.in_(keys)).order_by(rate_buckets.c.key)
        if connection.dialect.name == "postgresql":
            connection.execute(
                postgresql.insert(rate_buckets)
                .values([{"key": spec.key, "tokens": spec.capacity, "updated_at": now} for spec in specs])
                .on_conflict_do_nothing(index_elements=[rate_buckets.c.key])
            )
            query = query.with_for_update()
        stored = {row.key: (float(row.tokens), float(row.updated_at)) for row in connection.execute(query)}

        levels: dict[str, float] = {}
        wait = 0.0
        for spec in specs:
            level = spec.capacity
            if spec.key in stored:
                tokens, updated_at = stored[spec.key]
                level = min(spec.capacity, tokens + max(0.0, now - updated_at) * spec.per_second)
            levels[spec.key] = level
            if level < 1:
                wait = max(wait, (1 - level) / spec.per_second)
        if wait > 0:
            return wait

        for spec in specs:
            values = {"tokens": levels[spec.key] - 1, "updated_at": now}
            if spec.key in stored:
                connection.execute(rate_buckets.update().where(rate_buckets.c.key == spec.key).values(values))
            else:
                connection.execute(rate_buckets.insert().values(key=spec.key, **values))
        return 0.0
