"""Durable runtime throughput on PostgreSQL with 1, 2 and 4 worker processes (scripted zero-latency model).

Each run: a fresh database, messages queued beforehand, N worker processes (``bench/runtime_worker.py``)
connected and then released together; the figure is complete turns per second until every reply is in the
outbox. The baseline, in the same run, is one worker process. Then the latency from enqueue (in this process)
to turn start in an idle worker process, woken by ``NOTIFY``, p50 and p99 from the stored timestamps.

    python bench/bench_runtime_pg.py [--url postgresql://postgres@127.0.0.1:5432/postgres] [--messages 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import sqlalchemy as sa
from psycopg import sql

from botfactory.agents import Engine
from botfactory.config import Settings
from botfactory.runtime import Runtime, start_runtime
from botfactory.store import Store, create_sync_engine
from botfactory.testing import scripted_inference

sys.path.insert(0, str(Path(__file__).parent))
from runtime_worker import bench_bot

WORKER = Path(__file__).with_name("runtime_worker.py")


@contextlib.asynccontextmanager
async def enqueuer(url: str) -> AsyncIterator[Runtime]:
    """A runtime that only takes messages (no worker), as ``botfactory serve`` would."""
    store = await Store.open(url)
    stack = await start_runtime(
        Settings.load(database_url=url),
        store=store,
        engine=Engine(scripted_inference({})),
        bots=bench_bot(),
        run_worker=False,
        listen=False,
    )
    try:
        yield stack.runtime
    finally:
        await stack.aclose(grace_s=0)
        await store.close()


async def enqueue(url: str, messages: int, sessions: int) -> None:
    async with enqueuer(url) as runtime:
        batch = 500
        for start in range(0, messages, batch):
            await asyncio.gather(
                *(
                    runtime.enqueue("bench", session_id=f"s{i % sessions}", text=f"message {i}")
                    for i in range(start, min(start + batch, messages))
                )
            )


def answered(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.text("SELECT count(*) FROM outbox")).scalar_one())


def run_workers(url: str, workers: int, messages: int, concurrency: int) -> float:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), "--db", url, "--concurrency", str(concurrency)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(workers)
    ]
    engine = create_sync_engine(url)
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        started = time.perf_counter()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        while answered(engine) < messages:
            time.sleep(0.05)
        return messages / (time.perf_counter() - started)
    finally:
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.close()
        for proc in procs:
            proc.wait(timeout=60)
        engine.dispose()


async def enqueue_spaced(url: str, samples: int) -> None:
    async with enqueuer(url) as runtime:
        for i in range(samples):
            await runtime.enqueue("bench", session_id=f"lat{i}", text="ping")
            await asyncio.sleep(0.02)  # the worker is idle again before the next one


def start_latency(url: str, samples: int) -> tuple[float, float]:
    """p50 and p99 (ms) from enqueue to turn start, one idle worker in another process."""
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), "--db", url], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    engine = create_sync_engine(url)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
        time.sleep(1.0)
        asyncio.run(enqueue_spaced(url, samples))
        while answered(engine) < samples:
            time.sleep(0.05)
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text("SELECT t.started_at - i.enqueued_at FROM turns t JOIN inbox i ON i.turn_id = t.id")
            ).all()
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=60)
        engine.dispose()
    delays = sorted(row[0] * 1000 for row in rows)
    return delays[len(delays) // 2], delays[int(len(delays) * 0.99) - 1]


def main(admin_url: str, messages: int, sessions: int, concurrency: int) -> None:
    results: dict[int, float] = {}
    admin = psycopg.connect(admin_url, autocommit=True)
    name = f"botfactory_bench_{secrets.token_hex(4)}"
    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        p50, p99 = start_latency(sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False), 200)
    finally:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
    for workers in (1, 2, 4):
        name = f"botfactory_bench_{secrets.token_hex(4)}"
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            url = sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
            asyncio.run(enqueue(url, messages, sessions))
            results[workers] = run_workers(url, workers, messages, concurrency)
        finally:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
    print(f"PostgreSQL, {messages} messages over {sessions} sessions, concurrency {concurrency} per worker")
    print(f"{'worker processes':<18} {'turns/s':>9} {'vs one':>8}")
    for workers, rate in results.items():
        print(f"{workers:<18} {rate:>9.0f} {rate / results[1]:>8.2f}")
    print(f"CPU cores on this machine: {os.cpu_count()} (PostgreSQL itself shares them)")
    print(f"enqueue -> turn start, idle worker in another process (NOTIFY): p50 {p50:.2f} ms, p99 {p99:.2f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--sessions", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=32)
    arguments = parser.parse_args()
    main(arguments.url, arguments.messages, arguments.sessions, arguments.concurrency)
