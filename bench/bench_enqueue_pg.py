"""Enqueues per second into the PostgreSQL inbox from one process: commits side by side vs one at a time.

An enqueue commits alone on PostgreSQL (batched, it deadlocked with workers' batches), and a commit waits for its
WAL flush. The runtime's writer runs such operations on ``_ALONE_THREADS`` (4) threads; the baseline, in the same
run, is one thread (every enqueue waiting for the previous one's commit, as before). 64 callers at a time, each
message to a new session; the two settings alternate, each on a fresh database.

    python bench/bench_enqueue_pg.py [--url postgresql://postgres@127.0.0.1:5432/postgres] [--messages 600]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import time

import psycopg
import sqlalchemy as sa
from psycopg import sql

from botfactory.store import BatchWriter, Inbound, RuntimeStore, Store
from botfactory.store import writer as writer_module


async def enqueues_per_s(admin_url: str, threads: int, messages: int) -> float:
    name = f"bench_enqueue_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        writer_module._ALONE_THREADS = threads  # read when the writer is made
        store = await Store.open(url)
        writer = BatchWriter(url)
        queue = RuntimeStore(writer)
        callers = asyncio.Semaphore(64)

        async def one(i: int) -> None:
            async with callers:
                await queue.enqueue(Inbound(session_id=f"s{i}", bot="echo", text=f"message {i}"))

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(messages)))
        elapsed = time.perf_counter() - started
        await writer.close()
        await store.close()
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
    return messages / elapsed


async def main(url: str, messages: int, rounds: int) -> None:
    default = writer_module._ALONE_THREADS
    rates: dict[int, list[float]] = {1: [], default: []}
    for _ in range(rounds):
        for threads in (1, default):
            rates[threads].append(await enqueues_per_s(url, threads, messages))
    base = statistics.median(rates[1])
    for threads, values in rates.items():
        rate = statistics.median(values)
        print(
            f"{threads} thread{'s' if threads > 1 else ''} for alone commits: {rate:6.0f} enqueues/s  {rate / base:.2f}x"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--messages", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=2)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.url, arguments.messages, arguments.rounds))
