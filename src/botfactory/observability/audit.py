"""The audit log of tool calls, and the redaction that keeps secrets out of it (and out of traces).

The gateway hands each decided call to :meth:`AuditLog.record`, which returns at once: rows are written in
batches by a background task (every ``flush_s``, or sooner when many are waiting), so auditing adds no database
round trip to a tool call. Where the process runs a runtime, the batches join its writer's transactions
(:meth:`AuditLog.write_through`), so no SQL runs on the event loop the tool calls share. :meth:`AuditLog.aclose`
writes what is pending. A process killed with ``SIGKILL`` loses at most the last ``flush_s`` of rows; the turn's
own step records are durable regardless.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import sqlalchemy as sa

from botfactory.store import AuditQuery, AuditRecord, AuditStore, BatchWriter

__all__ = ["REDACTED", "AuditLog", "redact", "redact_text"]

logger = logging.getLogger(__name__)

REDACTED: Final = "***"
_SENSITIVE_KEY = re.compile(
    r"(passw|secret|token|api[_-]?key|authori[sz]ation|credential|cookie|private[_-]?key)", re.I
)
_MAX_VALUE_CHARS: Final = 2000
_MAX_PENDING: Final = 10_000


def redact_text(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret value replaced by ``***``."""
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redact(value: Any, secrets: Iterable[str] = (), *, key: str | None = None) -> Any:
    """A copy of JSON-like ``value`` safe to store or trace.

    Masks the values of fields whose names look sensitive (``password``, ``token``, ``api_key``, ...), every
    occurrence of a known secret value, and cuts long strings.
    """
    known = tuple(s for s in secrets if s)
    if key is not None and _SENSITIVE_KEY.search(key):
        return REDACTED
    if isinstance(value, str):
        text = redact_text(value, known)
        return text if len(text) <= _MAX_VALUE_CHARS else text[:_MAX_VALUE_CHARS] + "…"
    if isinstance(value, Mapping):
        return {str(k): redact(v, known, key=str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v, known) for v in value]
    return value


class AuditLog:
    """Buffered writer and reader of the audit log.

    Args:
        store: Where rows go.
        flush_s: Longest a row waits before it is written.
    """

    def __init__(self, store: AuditStore, *, flush_s: float = 0.05) -> None:
        self._store = store
        self._flush_s = flush_s
        self._pending: list[AuditRecord | Callable[[], AuditRecord]] = []
        self._wake = asyncio.Event()
        self._flushing = asyncio.Lock()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._writer: BatchWriter | None = None
        self.dropped = 0
        """Rows dropped because the database stayed unwritable and the buffer was full (logged)."""

    def write_through(self, writer: BatchWriter | None) -> None:
        """Insert batches as part of ``writer``'s transactions (the runtime's), on its thread; ``None``: through
        the store's async engine again (before that writer closes).

        Through the store's engine every batch is SQL run from the event loop (SQLAlchemy's async bridge); measured
        on the gateway bench, that cost each tool call about 0.3 ms, more than the rest of the audit step.
        """
        self._writer = writer

    def record(self, entry: AuditRecord) -> None:
        """Queue one row; it is written within ``flush_s``."""
        self._queue(entry, entry.tool)

    def record_later(self, tool: str, build: Callable[[], AuditRecord]) -> None:
        """Queue one row that ``build`` makes when the batch is written (on the writer's thread with
        :meth:`write_through`): redacting arguments and making the row's id then keeps them off the call's path.

        ``build`` must only read values that no longer change; a ``build`` that raises loses its row (logged and
        counted in :attr:`dropped`), never the batch.
        """
        self._queue(build, tool)

    def _queue(self, item: AuditRecord | Callable[[], AuditRecord], tool: str) -> None:
        if len(self._pending) >= _MAX_PENDING:
            self.dropped += 1
            logger.error(
                "tool=<%s>, dropped=<%d> | audit buffer full; the database is not taking writes", tool, self.dropped
            )
            return
        self._pending.append(item)
        if self._task is None and not self._closing:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="botfactory-audit")
        self._wake.set()

    async def flush(self) -> None:
        """Write every queued row now, and wait for a write already under way (so a reader sees every row)."""
        async with self._flushing:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    if self._writer is not None:
                        await self._writer.write(functools.partial(self._insert_on, batch=batch))
                    else:
                        await self._store.insert(self._built(batch))
                except Exception:
                    self._pending[:0] = batch  # kept for the next attempt, in order (rows already made stay made)
                    raise

    def _insert_on(self, connection: sa.Connection, batch: list[AuditRecord | Callable[[], AuditRecord]]) -> None:
        AuditStore.insert_on(connection, self._built(batch))

    def _built(self, batch: list[AuditRecord | Callable[[], AuditRecord]]) -> list[AuditRecord]:
        """The batch's rows, made where still to be made; ``batch`` is left holding them, so an attempt that fails
        after this makes no row twice (same ids, a broken one dropped and counted once)."""
        records = []
        for item in batch:
            if isinstance(item, AuditRecord):
                records.append(item)
                continue
            try:
                records.append(item())
            except Exception:  # a bug in making one row must not lose the others
                self.dropped += 1
                logger.exception("dropped=<%d> | an audit row could not be made; row dropped", self.dropped)
        batch[:] = records
        return records

    async def list(self, query: AuditQuery) -> list[AuditRecord]:
        """Rows matching ``query``, newest first (queued rows are written first, so a caller sees its own calls)."""
        await self.flush()
        return await self._store.list(query)

    async def aclose(self) -> None:
        """Write what is queued and stop the background task (it finishes the batch it is writing first)."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            task, self._task = self._task, None
            await asyncio.gather(task, return_exceptions=True)
        try:
            await self.flush()
        except Exception:
            logger.exception("pending=<%d> | could not write the last audit rows", len(self._pending))

    async def _run(self) -> None:
        while not self._closing:
            await self._wake.wait()
            if not self._closing:
                await asyncio.sleep(self._flush_s)  # let more rows join the batch
            self._wake.clear()
            try:
                await self.flush()
            except Exception:
                logger.warning("pending=<%d> | audit write failed; retrying", len(self._pending), exc_info=True)
                if not self._closing:
                    await asyncio.sleep(min(1.0, self._flush_s * 10))
