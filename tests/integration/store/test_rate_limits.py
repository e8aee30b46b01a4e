"""Token buckets in the rate_buckets table on SQLite and PostgreSQL, shared by two workers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa

from botfactory.config import RateLimitConfig, RateLimitSettings
from botfactory.gateway import Bucket, StoreRateLimiter
from botfactory.observability import BucketRetention
from botfactory.store import BatchWriter, BucketSpec, RateBucketStore, Store
from botfactory.store.schema import rate_buckets

T = TypeVar("T")

pytestmark = pytest.mark.integration


class ManualClock:
    """Epoch seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def manual_clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def opened() -> AsyncIterator[Callable[[T], T]]:
    """Registers rate-limit stores and limiters to close after the test (each holds its own connection)."""
    made: list[Any] = []

    def register(thing: T) -> T:
        made.append(thing)
        return thing

    yield register
    for thing in made:
        await (thing.aclose() if hasattr(thing, "aclose") else thing.close())


@pytest.fixture
async def workers(database_url: str) -> AsyncIterator[tuple[Store, Store]]:
    """Two stores on one database, each with its own engine and connection pool, like two worker processes."""
    async with await Store.open(database_url) as first, await Store.open(database_url, migrate=False) as second:
        yield first, second


async def tokens(store: Store) -> dict[str, float]:
    async with store.engine.connect() as connection:
        rows = (await connection.execute(sa.select(rate_buckets.c.key, rate_buckets.c.tokens))).all()
    return {row.key: row.tokens for row in rows}


async def test_two_workers_never_take_more_than_the_capacity(
    workers: tuple[Store, Store], opened: Callable[[Any], Any]
) -> None:
    first, second = workers
    limiters = [opened(StoreRateLimiter(first.engine)), opened(StoreRateLimiter(second.engine))]
    bucket = Bucket(key="tool:github.search", per_minute=0.0001, capacity=10)

    results = await asyncio.gather(*(limiters[i % 2].take([bucket]) for i in range(40)))

    assert sum(result == 0.0 for result in results) == 10
    assert all(result > 60 for result in results if result != 0.0)
    assert (await tokens(first))["tool:github.search"] == pytest.approx(0.0, abs=1e-3)


async def test_takes_through_a_runtime_writer_and_on_an_own_connection_share_one_bucket(
    workers: tuple[Store, Store], opened: Callable[[Any], Any], database_url: str
) -> None:
    # As on the platform: the process serving the gateway takes through its runtime's writer, another worker
    # process on its own connection; between them they never take more than the capacity.
    first, second = workers
    writer = BatchWriter(database_url)
    through = opened(StoreRateLimiter(first.engine))
    through.write_through(writer)
    own = opened(StoreRateLimiter(second.engine))
    bucket = Bucket(key="tool:github.search", per_minute=0.0001, capacity=10)
    try:
        results = await asyncio.gather(*((through if i % 2 else own).take([bucket]) for i in range(40)))
        through_writer = writer.batches
    finally:
        through.write_through(None)
        await writer.close()

    assert sum(result == 0.0 for result in results) == 10
    assert all(result > 60 for result in results if result != 0.0)
    assert through_writer > 0  # the writer's transactions really took them
    assert (await tokens(first))["tool:github.search"] == pytest.approx(0.0, abs=1e-3)


async def test_two_workers_taking_overlapping_buckets_in_different_orders_share_them(
    workers: tuple[Store, Store], opened: Callable[[Any], Any]
) -> None:
    first, second = workers
    tool = BucketSpec(key="tool:deploy", per_second=1e-6, capacity=6)
    bot = BucketSpec(key="bot:support", per_second=1e-6, capacity=100)
    user = BucketSpec(key="user:U1", per_second=1e-6, capacity=100)
    stores = [opened(RateBucketStore(first.engine)), opened(RateBucketStore(second.engine))]
    orders = [[tool, bot, user], [user, bot, tool]]

    results = await asyncio.gather(*(stores[i % 2].take(orders[i % 2]) for i in range(20)))

    assert sum(result == 0.0 for result in results) == 6
    left = await tokens(first)
    assert left["bot:support"] == pytest.approx(94, abs=1e-3)
    assert left["user:U1"] == pytest.approx(94, abs=1e-3)


async def test_tokens_come_back_at_the_refill_rate(
    workers: tuple[Store, Store], manual_clock: ManualClock, opened: Callable[[Any], Any]
) -> None:
    first, second = workers
    one = opened(RateBucketStore(first.engine, clock=manual_clock))
    other = opened(RateBucketStore(second.engine, clock=manual_clock))
    bucket = BucketSpec(key="user:U1", per_second=0.5, capacity=2)
    assert [await one.take([bucket]), await other.take([bucket])] == [0.0, 0.0]

    assert await one.take([bucket]) == pytest.approx(2.0)
    manual_clock.now += 1.5
    assert await other.take([bucket]) == pytest.approx(0.5)
    manual_clock.now += 0.5
    assert await other.take([bucket]) == 0.0

    manual_clock.now += 3600  # idle for an hour: full again, but no fuller than capacity
    assert [await one.take([bucket]) for _ in range(2)] == [0.0, 0.0]
    assert await one.take([bucket]) == pytest.approx(2.0)


async def test_a_clock_behind_the_stored_time_does_not_drain_the_bucket(
    workers: tuple[Store, Store], manual_clock: ManualClock, opened: Callable[[Any], Any]
) -> None:
    first, _ = workers
    buckets = opened(RateBucketStore(first.engine, clock=manual_clock))
    bucket = BucketSpec(key="bot:support", per_second=1.0, capacity=3)
    assert await buckets.take([bucket]) == 0.0

    manual_clock.now -= 30  # another host's clock is behind
    assert [await buckets.take([bucket]) for _ in range(3)] == [0.0, 0.0, pytest.approx(1.0)]


async def test_a_refused_take_changes_no_bucket(
    workers: tuple[Store, Store], manual_clock: ManualClock, opened: Callable[[Any], Any]
) -> None:
    first, _ = workers
    buckets = opened(RateBucketStore(first.engine, clock=manual_clock))
    scarce = BucketSpec(key="tool:deploy", per_second=0.01, capacity=1)
    plenty = BucketSpec(key="bot:support", per_second=0.01, capacity=5)
    assert await buckets.take([scarce, plenty]) == 0.0
    before = await tokens(first)

    manual_clock.now += 10
    new_user = BucketSpec(key="user:new", per_second=1, capacity=1)
    assert await buckets.take([scarce, plenty, new_user]) == pytest.approx(90.0)

    after = await tokens(first)
    assert {key: after[key] for key in before} == before
    # PostgreSQL creates missing rows before locking them; a new row is full, as if it were not there.
    assert after.get("user:new", 1.0) == 1.0
    assert await buckets.take([new_user]) == 0.0
    # plenty kept 4 tokens (+0.1 refilled): 4 more calls, then 0.9 tokens short at 0.01/s
    assert [await buckets.take([plenty]) for _ in range(5)] == [0.0] * 4 + [pytest.approx(90.0)]


async def test_no_buckets_touch_nothing(workers: tuple[Store, Store], opened: Callable[[Any], Any]) -> None:
    first, _ = workers

    assert await opened(RateBucketStore(first.engine)).take([]) == 0.0
    assert await tokens(first) == {}


async def test_idle_buckets_are_purged_and_a_purged_bucket_is_full_again(
    workers: tuple[Store, Store], manual_clock: ManualClock, opened: Callable[[Any], Any]
) -> None:
    first, _ = workers
    buckets = opened(RateBucketStore(first.engine, clock=manual_clock))
    slow = BucketSpec(key="tool:slow", per_second=1 / 60, capacity=2.0)  # empty to full: 120 s
    busy = BucketSpec(key="tool:busy", per_second=1.0, capacity=5.0)
    assert await buckets.take([slow]) == 0.0
    assert await buckets.take([slow]) == 0.0
    manual_clock.now += 100
    assert await buckets.take([busy]) == 0.0

    assert await buckets.purge_idle(idle_s=120) == 0  # slow was taken from 100 s ago: kept
    manual_clock.now += 30
    assert await buckets.purge_idle(idle_s=120) == 1
    assert set(await tokens(first)) == {"tool:busy"}
    # Idle past its refill time it was full anyway: gone, it grants its whole burst again.
    assert await buckets.take([slow]) == 0.0
    assert await buckets.take([slow]) == 0.0
    assert await buckets.take([slow]) > 0


async def test_the_bucket_retention_job_keeps_the_table_to_active_buckets(
    workers: tuple[Store, Store], manual_clock: ManualClock
) -> None:
    first, _ = workers
    buckets = RateBucketStore(first.engine, clock=manual_clock)
    try:
        await buckets.take([BucketSpec(key="user:slack:T1:U1", per_second=1.0, capacity=5.0)])
    finally:
        await buckets.close()
    manual_clock.now += 2 * 86_400
    job = BucketRetention(first.engine, idle_s=86_400, clock=manual_clock)
    job.start()  # purges at once, then hourly
    try:
        for _ in range(200):
            if job.purged:
                break
            await asyncio.sleep(0.01)
    finally:
        await job.aclose()
    assert job.purged == 1
    assert await tokens(first) == {}


def test_the_longest_refill_time_of_the_configured_limits() -> None:
    limits = RateLimitSettings(
        tools={"github.grant": RateLimitConfig(per_minute=2, burst=10)},  # 10 tokens at 2 a minute: 300 s
        per_user=RateLimitConfig(per_minute=60),  # 60 tokens at 60 a minute: 60 s
    )
    assert limits.longest_refill_s == pytest.approx(300.0)
    assert RateLimitSettings().longest_refill_s == 0.0
