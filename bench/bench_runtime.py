"""Durable runtime throughput and latency on SQLite, with a zero-latency scripted model.

Three figures, each against a baseline measured in the same run on the same disk:

- throughput: complete turns (message claimed, turn started, its model step recorded, turn finished with its
  reply in the outbox and the message answered) per second, one worker process, messages queued beforehand.
  Baseline: a bare per-session claim+ack loop on a SQLite file (stdlib sqlite3, the same pragmas, two
  ``BEGIN IMMEDIATE`` transactions per message), the physical floor of "one durable state change to claim,
  one to finish" on this disk.
- latency: enqueue -> turn start with an idle worker in the same process (``botfactory up``), p50 and p99,
  from the stored timestamps.

    python bench/bench_runtime.py [--sessions 500] [--messages 4] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from botfactory.agents import Agent, Bot, BotRegistry, Engine
from botfactory.config import Settings
from botfactory.runtime import RuntimeStack, start_runtime
from botfactory.store import Store, create_sync_engine
from botfactory.testing import ScriptedModel, scripted_inference


def floor_claim_ack(path: Path, messages: int, sessions: int, *, synchronous: str = "NORMAL") -> float:
    """Messages/s of a bare claim+ack loop: per message, one transaction to lease a session, one to ack.

    ``synchronous=NORMAL`` is what botfactory runs with (WAL: durable across crashes of the process, commits
    do not wait for the disk); ``FULL`` waits for the disk on every commit, the physical floor of the disk.
    """
    db = sqlite3.connect(path, isolation_level=None)
    for pragma in ("PRAGMA journal_mode = WAL", f"PRAGMA synchronous = {synchronous}", "PRAGMA busy_timeout = 10000"):
        db.execute(pragma)
    db.execute("CREATE TABLE q (session TEXT PRIMARY KEY, ready_at REAL, lease TEXT)")
    db.execute("CREATE INDEX q_ready ON q (ready_at)")
    db.execute("CREATE TABLE m (id INTEGER PRIMARY KEY, session TEXT, status TEXT)")
    db.execute("CREATE INDEX m_session ON m (session, id)")
    db.execute("BEGIN")
    db.executemany("INSERT INTO q VALUES (?, 0, NULL)", [(f"s{i}",) for i in range(sessions)])
    db.executemany(
        "INSERT INTO m (session, status) VALUES (?, 'pending')", [(f"s{i % sessions}",) for i in range(messages)]
    )
    db.execute("COMMIT")
    started = time.perf_counter()
    done = 0
    while done < messages:
        now = time.time()
        db.execute("BEGIN IMMEDIATE")
        row = db.execute("SELECT session FROM q WHERE ready_at <= ? ORDER BY ready_at LIMIT 1", (now,)).fetchone()
        db.execute("UPDATE q SET lease = 'x', ready_at = ? WHERE session = ?", (now + 30, row[0]))
        item = db.execute(
            "SELECT id FROM m WHERE session = ? AND status = 'pending' ORDER BY id LIMIT 1", (row[0],)
        ).fetchone()
        db.execute("COMMIT")
        db.execute("BEGIN IMMEDIATE")
        db.execute("UPDATE m SET status = 'done' WHERE id = ?", (item[0],))
        left = db.execute("SELECT 1 FROM m WHERE session = ? AND status = 'pending' LIMIT 1", (row[0],)).fetchone()
        db.execute("UPDATE q SET lease = NULL, ready_at = ? WHERE session = ?", (time.time() if left else None, row[0]))
        db.execute("COMMIT")
        done += 1
    elapsed = time.perf_counter() - started
    db.close()
    return messages / elapsed


def echo_bot() -> tuple[BotRegistry, ScriptedModel]:
    model = ScriptedModel(["ok"], cycle=True)
    bot = Bot(name="bench", agent=Agent(name="bench", instructions="Answer.", model="small"))
    return BotRegistry([bot]), model


async def _start(url: str, *, run_worker: bool, concurrency: int) -> tuple[Store, RuntimeStack, ScriptedModel]:
    store = await Store.open(url)
    bots, model = echo_bot()
    settings = Settings.load(database_url=url, runtime={"concurrency": concurrency})
    stack = await start_runtime(
        settings,
        store=store,
        engine=Engine(scripted_inference({"small": model})),
        bots=bots,
        run_worker=run_worker,
        listen=False,
        concurrency=concurrency,
    )
    return store, stack, model


def _count_done(url: str) -> int:
    engine = create_sync_engine(url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(sa.text("SELECT count(*) FROM outbox")).scalar_one())
    finally:
        engine.dispose()


async def runtime_throughput(url: str, messages: int, sessions: int, concurrency: int) -> tuple[float, float, int]:
    """(turns/s, enqueues/s, transactions) with the worker draining ``messages`` queued beforehand."""
    store, stack, _ = await _start(url, run_worker=False, concurrency=concurrency)
    started = time.perf_counter()
    await asyncio.gather(
        *(stack.runtime.enqueue("bench", session_id=f"s{i % sessions}", text=f"message {i}") for i in range(messages))
    )
    enqueue_rate = messages / (time.perf_counter() - started)
    await stack.aclose(grace_s=0)
    await store.close()

    store, stack, _ = await _start(url, run_worker=True, concurrency=concurrency)
    assert stack.worker is not None
    started = time.perf_counter()
    while stack.worker.stats.turns_finished < messages:  # noqa: ASYNC110 - polling a counter
        await asyncio.sleep(0.005)
    elapsed = time.perf_counter() - started
    batches = stack.queue.writer.batches
    await stack.aclose(grace_s=0)
    await store.close()
    assert _count_done(url) == messages, "every message must have its reply in the outbox"
    return messages / elapsed, enqueue_rate, batches


async def start_latency(url: str, samples: int) -> tuple[float, float]:
    """p50 and p99 (ms) from enqueue to turn start, idle worker in the same process."""
    store, stack, _ = await _start(url, run_worker=True, concurrency=8)
    for i in range(samples):
        await stack.runtime.enqueue("bench", session_id=f"lat{i}", text="ping")
        await asyncio.sleep(0.01)  # the worker is idle again before the next message
    while stack.worker is not None and stack.worker.stats.turns_finished < samples:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    await stack.aclose(grace_s=0)
    await store.close()
    engine = create_sync_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text(
                    "SELECT t.started_at - i.enqueued_at FROM turns t JOIN inbox i ON i.turn_id = t.id "
                    "WHERE i.session_id LIKE 'lat%'"
                )
            ).all()
    finally:
        engine.dispose()
    delays = sorted(row[0] * 1000 for row in rows)
    return statistics.median(delays), delays[int(len(delays) * 0.99) - 1]


async def main(sessions: int, per_session: int, concurrency: int, samples: int) -> None:
    messages = sessions * per_session
    with tempfile.TemporaryDirectory() as tmp:
        floor = floor_claim_ack(Path(tmp) / "floor.db", messages, sessions)
        disk_floor = floor_claim_ack(Path(tmp) / "floor-full.db", min(messages, 500), sessions, synchronous="FULL")
        url = f"sqlite:///{Path(tmp) / 'runtime.db'}"
        turns, enqueues, batches = await runtime_throughput(url, messages, sessions, concurrency)
        p50, p99 = await start_latency(f"sqlite:///{Path(tmp) / 'latency.db'}", samples)
    print(f"messages: {messages} ({sessions} sessions x {per_session}), worker concurrency {concurrency}")
    print(f"{'path':<44} {'per s':>9} {'vs floor':>9}")
    print(f"{'floor: bare SQLite claim+ack loop':<44} {floor:>9.0f} {1.0:>9.3f}")
    print(f"{'  same, synchronous=FULL (waits for the disk)':<44} {disk_floor:>9.0f} {disk_floor / floor:>9.3f}")
    print(f"{'runtime: complete turns, 1 worker process':<44} {turns:>9.0f} {turns / floor:>9.3f}")
    print(f"{'runtime: enqueue (concurrent callers)':<44} {enqueues:>9.0f} {enqueues / floor:>9.3f}")
    print(f"runtime vs the synchronous=FULL floor: {turns / disk_floor:.2f}x")
    print(f"write transactions per turn: {batches / messages:.3f}")
    print(f"enqueue -> turn start, idle worker in process: p50 {p50:.2f} ms, p99 {p99:.2f} ms ({samples} samples)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--messages", type=int, default=4, help="messages per session")
    parser.add_argument("--concurrency", type=int, default=32, help="the worker's concurrency (default as shipped)")
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.sessions, args.messages, args.concurrency, args.samples))
