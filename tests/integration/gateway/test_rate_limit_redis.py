"""Token buckets in a real Redis: atomic across workers and keys, timed by the server, keys that expire.

Redis is reached through ``BOTFACTORY_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``); every test uses
its own key prefix and deletes its keys after. The script reads Redis's own clock, which a test cannot move, so
the refill test waits a fraction of a second instead of injecting a clock.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Callable

import pytest

from botfactory.errors import StoreError
from botfactory.gateway import Bucket, RedisRateLimiter

pytestmark = pytest.mark.integration

redis_asyncio = pytest.importorskip("redis.asyncio", reason="the redis extra is not installed")

REDIS_URL = os.environ.get("BOTFACTORY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
async def redis() -> AsyncIterator[redis_asyncio.Redis]:
    """A client of the test Redis; the test is skipped, saying why, when the server does not answer."""
    client = redis_asyncio.Redis.from_url(REDIS_URL, socket_connect_timeout=2.0, socket_timeout=5.0)
    try:
        await client.ping()
    except Exception as exc:  # any failure to answer means "no Redis here"
        await client.aclose()
        pytest.skip(f"Redis does not answer at {REDIS_URL} ({exc}); start Redis or set BOTFACTORY_TEST_REDIS_URL")
    yield client
    await client.aclose()


@pytest.fixture
async def prefix(redis: redis_asyncio.Redis) -> AsyncIterator[str]:
    """A key prefix of this test alone; its keys are deleted after the test."""
    value = f"botfactory:test:{secrets.token_hex(6)}:"
    yield value
    keys = [key async for key in redis.scan_iter(match=f"{value}*")]
    if keys:
        await redis.delete(*keys)


@pytest.fixture
async def make_limiter(prefix: str) -> AsyncIterator[Callable[[], RedisRateLimiter]]:
    """Makes limiters with their own connections, like separate workers, and closes them after the test."""
    made: list[RedisRateLimiter] = []

    def make() -> RedisRateLimiter:
        made.append(RedisRateLimiter(REDIS_URL, prefix=prefix))
        return made[-1]

    yield make
    for limiter in made:
        await limiter.aclose()


async def test_two_workers_never_take_more_than_the_capacity(make_limiter: Callable[[], RedisRateLimiter]) -> None:
    limiters = [make_limiter(), make_limiter()]
    bucket = Bucket(key="tool:github.search", per_minute=0.0001, capacity=10)

    results = await asyncio.gather(*(limiters[i % 2].take([bucket]) for i in range(40)))

    assert sum(result == 0.0 for result in results) == 10
    assert all(result > 60 for result in results if result != 0.0)


async def test_a_refused_take_takes_no_token_from_any_bucket(make_limiter: Callable[[], RedisRateLimiter]) -> None:
    limiter = make_limiter()
    scarce = Bucket(key="tool:deploy", per_minute=0.001, capacity=1)
    plenty = Bucket(key="bot:support", per_minute=0.001, capacity=3)
    assert await limiter.take([scarce, plenty]) == 0.0

    for _ in range(5):
        assert await limiter.take([plenty, scarce]) > 0

    left = [await limiter.take([plenty]) for _ in range(3)]
    assert left[:2] == [0.0, 0.0]
    assert left[2] > 0


async def test_tokens_come_back_at_the_refill_rate(make_limiter: Callable[[], RedisRateLimiter]) -> None:
    one, other = make_limiter(), make_limiter()
    bucket = Bucket(key="user:U1", per_minute=600, capacity=2)  # one token every 0.1 s
    assert [await one.take([bucket]), await other.take([bucket])] == [0.0, 0.0]

    retry_after = await one.take([bucket])
    assert 0 < retry_after <= 0.1

    await asyncio.sleep(retry_after + 0.01)
    assert await other.take([bucket]) == 0.0
    assert await one.take([bucket]) > 0


async def test_a_key_expires_once_its_bucket_would_be_full_again(
    make_limiter: Callable[[], RedisRateLimiter], redis: redis_asyncio.Redis, prefix: str
) -> None:
    limiter = make_limiter()
    bucket = Bucket(key="user:U2", per_minute=60, capacity=5)  # one token a second
    assert [await limiter.take([bucket]) for _ in range(2)] == [0.0, 0.0]

    ttl_ms = await redis.pttl(f"{prefix}user:U2")

    assert 1_900 <= ttl_ms <= 2_000  # two tokens short at one a second
    assert await redis.hget(f"{prefix}user:U2", "tokens") is not None


async def test_a_bucket_that_refills_very_slowly_still_expires(
    make_limiter: Callable[[], RedisRateLimiter], redis: redis_asyncio.Redis, prefix: str
) -> None:
    limiter = make_limiter()
    bucket = Bucket(key="tool:yearly", per_minute=1e-12, capacity=1)

    assert await limiter.take([bucket]) == 0.0

    assert await limiter.take([bucket]) == pytest.approx(6e13)
    assert 0 < await redis.pttl(f"{prefix}tool:yearly") <= 10**12


async def test_a_refused_take_creates_no_key(
    make_limiter: Callable[[], RedisRateLimiter], redis: redis_asyncio.Redis, prefix: str
) -> None:
    limiter = make_limiter()
    scarce = Bucket(key="tool:deploy", per_minute=0.001, capacity=1)
    assert await limiter.take([scarce]) == 0.0

    assert await limiter.take([scarce, Bucket(key="user:new", per_minute=1, capacity=1)]) > 0

    assert await redis.exists(f"{prefix}user:new") == 0


async def test_an_unreachable_redis_is_a_retryable_store_error() -> None:
    limiter = RedisRateLimiter("redis://:hunter2@127.0.0.1:1/0")  # nothing listens on port 1
    try:
        with pytest.raises(StoreError, match=r"unset gateway\.redis_url") as caught:
            await limiter.take([Bucket(key="tool:x", per_minute=1, capacity=1)])
    finally:
        await limiter.aclose()

    assert caught.value.retryable
    assert "hunter2" not in str(caught.value)
