"""Four worker processes share one database: every message answered once, in order, one turn at a time per session."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from conftest_mp import Tables, WorkerPool, answered_once_in_order, deadlocks, enqueuing_runtime, rounds

from botfactory.store import Store

WORKERS = 4
SESSIONS = 50
MESSAGES = 20


@pytest.mark.timeout(150)
async def test_four_worker_processes_answer_every_message_once_in_arrival_order(
    database_url: str, tmp_path: Path
) -> None:
    sessions = [f"mp-{i:02d}" for i in range(SESSIONS)]
    sent: dict[str, list[str]] = {session_id: [] for session_id in sessions}
    async with await Store.open(database_url) as store:
        deadlocks_before = await deadlocks(store)
        async with enqueuing_runtime(store, database_url) as stack:
            with WorkerPool(
                url=database_url, directory=tmp_path / "workers", args=["--concurrency", "8", "--lease-s", "5"]
            ) as pool:
                for _ in range(WORKERS):
                    pool.spawn()
                await pool.wait_ready()
                started = time.monotonic()
                # Rounds arrive while the workers answer the previous ones; each round waits for its enqueues.
                for batch in rounds(sessions, MESSAGES, lambda session_id, n: f"{session_id} message {n}"):
                    await asyncio.gather(
                        *(stack.runtime.enqueue("echo", session_id=s, text=text, user_id="u-mp") for s, text in batch)
                    )
                    for session_id, text in batch:
                        sent[session_id].append(text)
                counts = await pool.drain(stack.queue.writer.read, SESSIONS * MESSAGES, within=90)
                elapsed = time.monotonic() - started
                exits = await pool.stop()
                errors = pool.errors()
            tables = await stack.queue.writer.read(lambda connection: Tables.read(connection, sessions))
        deadlocks_after = await deadlocks(store)
    print(f"{SESSIONS * MESSAGES} messages answered by {WORKERS} worker processes in {elapsed:.1f} s")
    assert counts == {"done": SESSIONS * MESSAGES}
    assert answered_once_in_order(tables, sent) == []
    assert len(tables.turns) == len(tables.outbox) == SESSIONS * MESSAGES
    assert exits == dict.fromkeys(range(WORKERS), 0), "SIGTERM must stop every worker gracefully"
    assert errors == []
    if deadlocks_before is not None and deadlocks_after is not None:
        assert deadlocks_after - deadlocks_before == 0, (
            "PostgreSQL detected deadlocks among the processes' transactions: each stalls them for deadlock_timeout "
            "and may fail a write (see the server log)"
        )
