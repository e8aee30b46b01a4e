"""SQLite: the batch writer's commits never checkpoint the WAL themselves; a thread of its own does, every second."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from botfactory.store import BatchWriter, Store
from botfactory.store import writer as writer_module

pytestmark = pytest.mark.integration

_ROWS = sa.table("padding", sa.column("id", sa.Integer), sa.column("body", sa.Text))


async def _fill(writer: BatchWriter, *, batches: int) -> None:
    await writer.write(lambda c: c.exec_driver_sql("CREATE TABLE IF NOT EXISTS padding (id INTEGER, body TEXT)"))
    for n in range(batches):
        rows = [{"id": n * 100 + i, "body": "x" * 1000} for i in range(100)]
        await writer.write(lambda c, rows=rows: c.execute(sa.insert(_ROWS), rows))  # type: ignore[misc]
        await asyncio.sleep(0.01)


async def test_the_writer_connection_leaves_checkpoints_to_the_checkpoint_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bf.db"
    store = await Store.open(f"sqlite:///{path}")
    monkeypatch.setattr(writer_module, "_CHECKPOINT_S", 3600.0)  # never within this test
    writer = BatchWriter(f"sqlite:///{path}")
    try:
        assert await writer.write(lambda c: c.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()) == 0
        size = path.stat().st_size
        await _fill(writer, batches=50)  # ~5 MB: far past the 1,000 pages at which a commit would checkpoint
        assert path.stat().st_size == size  # every new page is still in the WAL only
        assert (tmp_path / "bf.db-wal").stat().st_size > 4_000_000
    finally:
        await writer.close()
        await store.close()


async def test_the_checkpoint_thread_copies_the_wal_into_the_database_while_writes_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bf.db"
    store = await Store.open(f"sqlite:///{path}")
    monkeypatch.setattr(writer_module, "_CHECKPOINT_S", 0.05)
    writer = BatchWriter(f"sqlite:///{path}")
    try:
        size = path.stat().st_size
        await _fill(writer, batches=50)
        await writer.flush()
        await asyncio.sleep(0.1)
        await writer.flush()  # a commit after the interval starts one more checkpoint
        await asyncio.sleep(0.2)
        assert path.stat().st_size > size + 4_000_000  # the pages reached the database file
    finally:
        await writer.close()
        await store.close()
    with sqlite3.connect(path) as check:
        assert check.execute("SELECT count(*) FROM padding").fetchone() == (5000,)
