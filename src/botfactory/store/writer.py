"""Group commit: many small writes from concurrent tasks, one short transaction per batch.

The durable runtime records every step of every turn before the turn goes on. One transaction per record
would cost a commit, a thread hop and an async bridge each; instead every task hands its operation to a
:class:`BatchWriter` and awaits it. A single writer thread takes everything queued so far, runs it in one
transaction (``BEGIN IMMEDIATE`` on SQLite) and resolves each caller once the batch has committed, so a
caller still knows its write is durable before it proceeds. While one batch commits, the next one fills.

An operation is a plain function of a synchronous SQLAlchemy connection. It must only touch the
database: if a batch fails, it is rolled back and each of its operations is re-run alone, so one bad
operation fails only its own caller.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

import sqlalchemy as sa

from botfactory.errors import StoreError
from botfactory.store.engine import WRITE_OPTIONS, create_sync_engine, database_error

__all__ = ["BatchWriter", "Operation"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
Operation = Callable[[sa.Connection], T]
"""A unit of work run inside the writer's transaction; returns the caller's result."""

_MAX_BATCH: Final = 512
_GATHER_YIELDS: Final = 4
"""Event-loop turns the writer lets pass before taking a batch, so more tasks' writes join it (measured:
about 25 % more turns/s at the default concurrency for about 0.1 ms more per write)."""
_RACE_SQLSTATES: Final = frozenset({"40001", "40P01"})  # serialization_failure, deadlock_detected
_RACE_RETRIES: Final = 5
_RACE_BACKOFF_S: Final = 0.002
_ALONE_THREADS: Final = 4
"""PostgreSQL: operations that must commit alone run on this many threads at once, each with its connection (one
thread would cap a process at one commit, i.e. one WAL flush, at a time: ~110 enqueues a second here)."""
_CHECKPOINT_S: Final = 1.0
"""SQLite: how often the WAL is copied back into the database file, off the writer thread (see ``_checkpoint``)."""


@dataclass(slots=True)
class _Queued(Generic[T]):
    operation: Operation[T]
    future: asyncio.Future[T] | None
    alone: bool = False
    queued_at: float = 0.0


@dataclass(slots=True)
class _Outcome:
    value: Any = None
    error: BaseException | None = None


class BatchWriter:
    """Runs database operations in batched transactions on one dedicated thread (and reads on another).

    Create it inside the event loop that will use it and close it with :meth:`close`.

    Args:
        url: The database URL, as for :meth:`botfactory.store.Store.open`. The schema must be current.
    """

    def __init__(self, url: str) -> None:
        self.engine = create_sync_engine(url)
        self.dialect_name: str = self.engine.dialect.name
        self._queue: list[_Queued[Any]] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._write_thread = ThreadPoolExecutor(1, thread_name_prefix="botfactory-writer")
        self._read_thread = ThreadPoolExecutor(1, thread_name_prefix="botfactory-reader")
        # SQLite: the connection whose commit fills the WAL past 1,000 pages copies it back into the database file
        # and syncs it there and then: ~20 ms every second or so at a few hundred turns a second, on the writer
        # thread, with every caller of the batch (an ack among them) waiting. Here the writer's connections never
        # do; a third thread checkpoints passively (writers go on meanwhile) every second instead.
        self._checkpoint_thread: ThreadPoolExecutor | None = None
        if self.dialect_name == "sqlite":
            sa.event.listen(self.engine, "connect", _no_autocheckpoint)
            self._checkpoint_thread = ThreadPoolExecutor(1, thread_name_prefix="botfactory-checkpoint")
        self._alone_threads: ThreadPoolExecutor | None = None
        if self.dialect_name != "sqlite":  # SQLite has one writer at a time anyway: there they queue like the rest
            self._alone_threads = ThreadPoolExecutor(_ALONE_THREADS, thread_name_prefix="botfactory-writer-alone")
        self._alone_running: set[asyncio.Future[list[_Outcome]]] = set()
        self._connections: list[sa.Connection] = []
        self._checkpointing: asyncio.Future[None] | None = None
        self._last_checkpoint = asyncio.get_running_loop().time()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="botfactory-writer")
        self._local = threading.local()
        self.batches = 0
        """Transactions committed so far (for benchmarks and tests)."""
        self.latency_s = 0.0
        """How long the oldest write of the last batch waited for its commit: the wait a new write can expect."""
        self._committed_at = 0.0
        self.on_commit: Callable[[], None] | None = None
        """Called on the event loop after every committed batch."""
        self.before_commit: list[Callable[[sa.Connection], None]] = []
        """Run on the writer thread at the end of every batch's transaction, inside it."""
        self.on_begin: list[Callable[[], None]] = []
        """Run on the writer thread as every transaction begins (reset what a rolled-back attempt gathered)."""

    async def write(self, operation: Operation[T], *, alone: bool = False) -> T:
        """Run ``operation`` in the next batch and return its result once the batch has committed.

        ``alone`` runs it in a transaction of its own: for operations that lock rows other processes lock too
        (PostgreSQL), so a batch never holds many sessions' locks while waiting for another process. On PostgreSQL
        such operations commit on a few threads of their own, concurrently with each other and with the batches
        (the database orders them by their row locks); on SQLite they wait their turn in the queue.

        Raises:
            StoreError: the database failed (the operation's writes were rolled back).
            Whatever ``operation`` raised: its writes were rolled back.
        """
        if self._closing:
            raise StoreError("the store is shutting down; retry on another worker")
        loop = asyncio.get_running_loop()
        if alone and self._alone_threads is not None:
            return await self._write_alone(operation)
        future: asyncio.Future[T] = loop.create_future()
        self._queue.append(_Queued(operation, future, alone, loop.time()))
        self._wake.set()
        # The batch runs whether or not the caller still waits: a cancelled caller's write still lands.
        return await asyncio.shield(future)

    async def _write_alone(self, operation: Operation[T]) -> T:
        assert self._alone_threads is not None
        running = asyncio.get_running_loop().run_in_executor(self._alone_threads, self._commit, [operation])
        self._alone_running.add(running)
        running.add_done_callback(self._alone_done)
        # Like a batch, it commits whether or not the caller still waits.
        outcome = (await asyncio.shield(running))[0]
        if outcome.error is not None:
            raise outcome.error
        return outcome.value  # type: ignore[no-any-return]

    def _alone_done(self, running: asyncio.Future[list[_Outcome]]) -> None:
        self._alone_running.discard(running)
        if running.cancelled() or running.exception() is not None:
            return
        self.batches += 1
        if self.on_commit is not None:
            self.on_commit()

    def write_later(self, operation: Operation[Any]) -> None:
        """Queue ``operation`` for the next batch without waiting for it (events, best-effort records)."""
        if self._closing:
            return
        self._queue.append(_Queued(operation, None, queued_at=asyncio.get_running_loop().time()))
        self._wake.set()

    async def read(self, operation: Operation[T]) -> T:
        """Run a read-only ``operation`` on the reader thread, outside the write batches."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._read_thread, self._read, operation)

    def recent_latency_s(self, within_s: float) -> float:
        """:attr:`latency_s` if a batch committed in the last ``within_s`` seconds, else 0 (no writes, no wait)."""
        if asyncio.get_running_loop().time() - self._committed_at > within_s:
            return 0.0
        return self.latency_s

    async def flush(self) -> None:
        """Wait until everything queued so far has committed."""
        await self.write(lambda connection: None)

    async def close(self) -> None:
        """Commit what is queued, then stop the threads and close the connections."""
        if not self._closing:
            self._closing = True
            self._wake.set()
            await self._task
        if self._alone_running:
            await asyncio.gather(*self._alone_running, return_exceptions=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._read_thread, self._close_connection)
        await loop.run_in_executor(self._write_thread, self._close_connection)
        self._write_thread.shutdown(wait=True)
        self._read_thread.shutdown(wait=True)
        if self._alone_threads is not None:
            self._alone_threads.shutdown(wait=True)
            for connection in self._connections:  # the alone threads' (their threads have ended)
                if not connection.closed:
                    connection.close()
        if self._checkpoint_thread is not None:
            if self._checkpointing is not None:
                await asyncio.gather(self._checkpointing, return_exceptions=True)
            await loop.run_in_executor(self._checkpoint_thread, self._close_connection)
            self._checkpoint_thread.shutdown(wait=True)
        self.engine.dispose()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            # Let the tasks that are ready run first: their writes join this batch instead of the next.
            for _ in range(_GATHER_YIELDS):
                await asyncio.sleep(0)
            self._wake.clear()
            if not self._queue:
                if self._closing:
                    return
                continue
            size = 1 if self._queue[0].alone else _batch_size(self._queue)
            batch, self._queue = self._queue[:size], self._queue[size:]
            if self._queue:
                self._wake.set()
            operations = [queued.operation for queued in batch]
            try:
                outcomes = await loop.run_in_executor(self._write_thread, self._commit, operations)
            except BaseException as exc:  # the thread pool itself failed; nothing was written
                outcomes = [_Outcome(error=exc)] * len(batch)
            self.batches += 1
            now = loop.time()
            self.latency_s = now - min(queued.queued_at for queued in batch)
            self._committed_at = now
            if self._checkpoint_thread is not None and now - self._last_checkpoint >= _CHECKPOINT_S:
                self._start_checkpoint(now)
            if self.on_commit is not None:
                self.on_commit()
            for queued, outcome in zip(batch, outcomes, strict=True):
                future = queued.future
                if future is None:
                    if outcome.error is not None:
                        logger.warning("error=<%s> | a background write failed", outcome.error)
                    continue
                if future.done():
                    continue
                if outcome.error is not None:
                    future.set_exception(outcome.error)
                else:
                    future.set_result(outcome.value)
            if self._closing and not self._queue:
                return

    def _start_checkpoint(self, now: float) -> None:
        if self._checkpointing is not None and not self._checkpointing.done():
            return
        assert self._checkpoint_thread is not None
        self._last_checkpoint = now
        self._checkpointing = asyncio.get_running_loop().run_in_executor(self._checkpoint_thread, self._checkpoint)

    # The checkpoint thread

    def _checkpoint(self) -> None:
        """Copy what the WAL holds back into the database file, without waiting for readers or writers."""
        connection: sa.Connection | None = getattr(self._local, "connection", None)
        try:
            if connection is None or connection.closed or connection.invalidated:
                connection = self.engine.connect()
                self._local.connection = connection
            # No transaction: the driver is in autocommit (``_sqlite``) and this connection never begins one.
            connection.connection.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")  # type: ignore[union-attr]
        except Exception as exc:  # the next commit's WAL simply grows; the next checkpoint tries again
            logger.warning("error=<%s> | WAL checkpoint failed", exc)
            if connection is not None:
                connection.invalidate()
            self._local.connection = None

    # The writer thread

    def _commit(self, operations: list[Operation[Any]]) -> list[_Outcome]:
        attempt = 0
        while True:
            try:
                return [_Outcome(value=value) for value in self._transaction(operations)]
            except BaseException as exc:
                if _lost_a_race(exc) and attempt < _RACE_RETRIES:
                    # PostgreSQL broke a deadlock with another process's transaction by rolling this one back:
                    # nothing was written and the operations may simply run again.
                    attempt += 1
                    logger.info(
                        "operations=<%d>, attempt=<%d> | deadlock with another process; retrying",
                        len(operations),
                        attempt,
                    )
                    time.sleep(random.uniform(0, _RACE_BACKOFF_S * 2**attempt))
                    continue
                if len(operations) == 1:
                    return [_Outcome(error=_as_store_error(exc, self.engine.url))]
                break
        # Isolate the operation that failed: each one alone, in its own transaction.
        logger.debug("operations=<%d> | batch failed; retrying each alone", len(operations))
        return [self._commit([operation])[0] for operation in operations]

    def _transaction(self, operations: list[Operation[Any]]) -> list[Any]:
        connection = self._writer_connection()
        try:
            with connection.begin():
                for reset in self.on_begin:
                    reset()
                results = [operation(connection) for operation in operations]
                for hook in self.before_commit:
                    hook(connection)
                return results
        except sa.exc.DBAPIError as exc:
            if not _lost_a_race(exc):
                # The connection may be broken (server restart); take a fresh one next time.
                self._local.connection = None
                connection.invalidate()
            raise

    def _writer_connection(self) -> sa.Connection:
        connection: sa.Connection | None = getattr(self._local, "connection", None)
        if connection is None or connection.closed or connection.invalidated:
            connection = self.engine.connect().execution_options(**WRITE_OPTIONS)
            self._local.connection = connection
            self._connections = [c for c in self._connections if not (c.closed or c.invalidated)] + [connection]
        return connection

    # The reader thread

    def _read(self, operation: Operation[T]) -> T:
        connection: sa.Connection | None = getattr(self._local, "connection", None)
        if connection is None or connection.closed or connection.invalidated:
            connection = self.engine.connect()
            self._local.connection = connection
        try:
            with connection.begin():
                return operation(connection)
        except sa.exc.DBAPIError as exc:
            self._local.connection = None
            connection.invalidate()
            raise database_error(exc, self.engine.url, doing="reading the runtime's state") from exc

    def _close_connection(self) -> None:
        connection: sa.Connection | None = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None


def _batch_size(queue: list[_Queued[Any]]) -> int:
    """Operations from the head of the queue up to the first that must run alone (or the batch limit)."""
    return next((i for i, queued in enumerate(queue[:_MAX_BATCH]) if queued.alone), min(len(queue), _MAX_BATCH))


def _lost_a_race(exc: BaseException) -> bool:
    """A deadlock or serialization failure: the database rolled this transaction back in favour of another."""
    return isinstance(exc, sa.exc.DBAPIError) and getattr(exc.orig, "sqlstate", None) in _RACE_SQLSTATES


def _as_store_error(exc: BaseException, url: sa.URL) -> BaseException:
    """Driver errors become :class:`StoreError`; constraint violations and our own errors pass through."""
    if isinstance(exc, sa.exc.DBAPIError) and not isinstance(exc, sa.exc.IntegrityError):
        return database_error(exc, url, doing="writing the runtime's state")
    return exc


def _no_autocheckpoint(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA wal_autocheckpoint = 0")
