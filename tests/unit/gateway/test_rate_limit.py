"""Token buckets in memory with an injected clock, the buckets a call falls in, and picking a limiter."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from botfactory.config import GatewaySettings, RateLimitConfig, RateLimitSettings
from botfactory.errors import ConfigError, MissingExtraError
from botfactory.gateway import (
    Bucket,
    MemoryRateLimiter,
    RedisRateLimiter,
    StoreRateLimiter,
    buckets_for,
    rate_limiter_from_settings,
)
from botfactory.store import create_engine


class ManualClock:
    """A clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def limiter(clock: ManualClock) -> MemoryRateLimiter:
    return MemoryRateLimiter(clock=clock)


async def test_a_new_bucket_allows_a_burst_of_its_capacity_then_refuses(limiter: MemoryRateLimiter) -> None:
    bucket = Bucket(key="tool:search", per_minute=6, capacity=3)

    results = [await limiter.take([bucket]) for _ in range(4)]

    assert results[:3] == [0.0, 0.0, 0.0]
    assert results[3] == pytest.approx(10.0)  # 6 a minute: one token every 10 s


async def test_tokens_come_back_at_the_refill_rate_and_never_beyond_capacity(
    limiter: MemoryRateLimiter, clock: ManualClock
) -> None:
    bucket = Bucket(key="tool:search", per_minute=60, capacity=2)
    assert [await limiter.take([bucket]) for _ in range(2)] == [0.0, 0.0]

    clock.now += 0.5
    assert await limiter.take([bucket]) == pytest.approx(0.5)
    clock.now += 0.5
    assert await limiter.take([bucket]) == 0.0

    clock.now += 3600  # an hour idle refills only up to capacity
    after_idle = [await limiter.take([bucket]) for _ in range(3)]
    assert after_idle[:2] == [0.0, 0.0]
    assert after_idle[2] == pytest.approx(1.0)


async def test_the_retry_after_is_the_wait_for_the_slowest_empty_bucket(
    limiter: MemoryRateLimiter, clock: ManualClock
) -> None:
    fast = Bucket(key="tool:search", per_minute=60, capacity=1)
    slow = Bucket(key="user:u1", per_minute=2, capacity=1)
    assert await limiter.take([fast, slow]) == 0.0

    assert await limiter.take([fast, slow]) == pytest.approx(30.0)
    clock.now += 29.0
    assert await limiter.take([fast, slow]) == pytest.approx(1.0)
    clock.now += 1.0
    assert await limiter.take([fast, slow]) == 0.0


async def test_a_refused_take_takes_no_token_from_any_bucket(limiter: MemoryRateLimiter) -> None:
    scarce = Bucket(key="tool:deploy", per_minute=0.001, capacity=1)
    plenty = Bucket(key="bot:support", per_minute=0.001, capacity=3)
    assert await limiter.take([scarce, plenty]) == 0.0

    for _ in range(5):
        assert await limiter.take([scarce, plenty]) > 0

    # plenty lost only the one token of the call that went through
    left = [await limiter.take([plenty]) for _ in range(3)]
    assert left[:2] == [0.0, 0.0]
    assert left[2] > 0


async def test_a_key_given_twice_is_one_bucket(limiter: MemoryRateLimiter) -> None:
    bucket = Bucket(key="user:u1", per_minute=0.001, capacity=2)

    assert await limiter.take([bucket, bucket]) == 0.0
    assert await limiter.take([bucket]) == 0.0
    assert await limiter.take([bucket]) > 0


async def test_no_buckets_means_no_limit(limiter: MemoryRateLimiter) -> None:
    assert [await limiter.take([]) for _ in range(100)] == [0.0] * 100


@pytest.mark.parametrize(("per_minute", "capacity"), [(0, 1), (-1, 1), (float("nan"), 1), (1, 0)])
def test_a_bucket_that_could_never_allow_a_call_is_a_config_error(per_minute: float, capacity: int) -> None:
    with pytest.raises(ConfigError, match=r"fix \[gateway.rate_limits\]"):
        Bucket(key="tool:x", per_minute=per_minute, capacity=capacity)


LIMITS = RateLimitSettings(
    tools={"github.search": RateLimitConfig(per_minute=30), "deploy": RateLimitConfig(per_minute=1, burst=2)},
    bots={"support": RateLimitConfig(per_minute=120.5)},
    per_user=RateLimitConfig(per_minute=10, burst=5),
)


def test_a_call_falls_in_its_tool_bot_and_user_buckets() -> None:
    assert buckets_for(LIMITS, tool="github.search", bot="support", user_id="U1") == [
        Bucket(key="tool:github.search", per_minute=30, capacity=30),
        Bucket(key="bot:support", per_minute=120.5, capacity=121),
        Bucket(key="user:U1", per_minute=10, capacity=5),
    ]


def test_unlimited_tools_and_bots_and_calls_without_a_user_have_no_bucket() -> None:
    assert buckets_for(LIMITS, tool="deploy", bot="other", user_id=None) == [
        Bucket(key="tool:deploy", per_minute=1, capacity=2)
    ]
    assert buckets_for(LIMITS, tool="docs.search", bot="other", user_id=None) == []
    assert buckets_for(RateLimitSettings(), tool="github.search", bot="support", user_id="U1") == []


async def test_settings_pick_the_database_unless_a_redis_url_is_set(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        assert isinstance(rate_limiter_from_settings(GatewaySettings(), engine), StoreRateLimiter)
        limiter = rate_limiter_from_settings(GatewaySettings(redis_url="redis://127.0.0.1:1/0"), engine)
        assert isinstance(limiter, RedisRateLimiter)
        await limiter.aclose()
    finally:
        await engine.dispose()


def test_redis_without_the_extra_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)

    with pytest.raises(MissingExtraError, match=r"botfactory\[redis\]"):
        RedisRateLimiter("redis://127.0.0.1:6379/0")
