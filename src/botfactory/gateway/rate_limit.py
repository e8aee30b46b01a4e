"""Token-bucket rate limits of tool calls: per tool, per bot and per user, shared by every worker.

A call takes one token from each bucket it falls in, all or none (:func:`buckets_for` lists them). Buckets live in
the database (:class:`StoreRateLimiter`, the default) or in Redis (:class:`RedisRateLimiter`, when
``gateway.redis_url`` is set); :class:`MemoryRateLimiter` keeps them in one process, for tests and single runs.
See docs/rate-limits.md.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncEngine

from botfactory.config import GatewaySettings, RateLimitConfig, RateLimitSettings
from botfactory.errors import ConfigError, MissingExtraError, StoreError
from botfactory.store import BatchWriter, BucketSpec, RateBucketStore

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
    "Bucket",
    "MemoryRateLimiter",
    "RateLimiter",
    "RedisRateLimiter",
    "StoreRateLimiter",
    "buckets_for",
    "rate_limiter_from_settings",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Bucket:
    """One token bucket: ``capacity`` calls at once, refilled at ``per_minute`` calls a minute.

    Attributes:
        key: What the bucket counts, e.g. ``tool:github.search``, ``bot:support`` or ``user:U123``.
        per_minute: Tokens added back per minute.
        capacity: The most tokens the bucket holds; a bucket used for the first time starts full.
    """

    key: str
    per_minute: float
    capacity: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.per_minute) and self.per_minute > 0 and self.capacity >= 1):
            raise ConfigError(
                f"rate-limit bucket {self.key} needs per_minute above 0 and a capacity of at least 1 "
                f"(got {self.per_minute}, {self.capacity}); fix [gateway.rate_limits] in botfactory.toml"
            )

    @property
    def per_second(self) -> float:
        """Tokens added back per second."""
        return self.per_minute / 60.0


class RateLimiter(Protocol):
    """Where token buckets are kept; every worker of a deployment must use the same one."""

    async def take(self, buckets: Sequence[Bucket]) -> float:
        """Take one token from every bucket, or from none when any is empty.

        A key given twice is one bucket (the first one given sets its rate and capacity).

        Returns:
            ``0.0`` when the call may go ahead, else the seconds until every bucket will hold a token again.
        """
        ...

    async def aclose(self) -> None:
        """Release connections; the limiter is not used after this."""
        ...


def _unique(buckets: Sequence[Bucket]) -> list[Bucket]:
    """The buckets in key order, each key once (the first one given wins)."""
    by_key: dict[str, Bucket] = {}
    for bucket in buckets:
        by_key.setdefault(bucket.key, bucket)
    return [by_key[key] for key in sorted(by_key)]


def buckets_for(limits: RateLimitSettings, *, tool: str, bot: str, user_id: str | None) -> list[Bucket]:
    """The buckets a call of ``tool`` by ``bot`` for ``user_id`` takes a token from; empty when none is limited.

    Keys are ``tool:<tool>``, ``bot:<bot>`` and ``user:<user_id>``; the user's bucket only when the call has a user.
    """

    def bucket(key: str, config: RateLimitConfig) -> Bucket:
        return Bucket(key=key, per_minute=config.per_minute, capacity=config.capacity)

    buckets: list[Bucket] = []
    if (tool_limit := limits.tools.get(tool)) is not None:
        buckets.append(bucket(f"tool:{tool}", tool_limit))
    if (bot_limit := limits.bots.get(bot)) is not None:
        buckets.append(bucket(f"bot:{bot}", bot_limit))
    if limits.per_user is not None and user_id is not None:
        buckets.append(bucket(f"user:{user_id}", limits.per_user))
    return buckets


class MemoryRateLimiter:
    """Buckets in this process's memory: for tests and a single worker; other processes do not see them.

    Args:
        clock: Current time in seconds; tests inject one.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._levels: dict[str, tuple[float, float]] = {}
        """Key -> (tokens, when they were counted)."""

    async def take(self, buckets: Sequence[Bucket]) -> float:
        """Take one token from every bucket, or from none (see :meth:`RateLimiter.take`)."""
        now = self._clock()
        wanted = _unique(buckets)
        levels: dict[str, float] = {}
        wait = 0.0
        for bucket in wanted:
            level = float(bucket.capacity)
            if bucket.key in self._levels:
                tokens, at = self._levels[bucket.key]
                level = min(level, tokens + max(0.0, now - at) * bucket.per_second)
            levels[bucket.key] = level
            if level < 1:
                wait = max(wait, (1 - level) / bucket.per_second)
        if wait > 0:
            return wait
        for key, level in levels.items():
            self._levels[key] = (level - 1, now)
        return 0.0

    async def aclose(self) -> None:
        """Forget every bucket."""
        self._levels.clear()


class StoreRateLimiter:
    """Buckets in the database's ``rate_buckets`` table, shared by every worker on that database.

    Each take is one short write transaction; on SQLite writers queue behind each other, so under heavy tool
    traffic from many workers prefer Redis.

    Args:
        engine: The platform's database engine (schema at revision 0005 or later).
        clock: Current time in epoch seconds; tests inject one.
    """

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], float] = time.time) -> None:
        self._store = RateBucketStore(engine, clock=clock)

    def write_through(self, writer: BatchWriter | None) -> None:
        """Take tokens in the runtime writer's transactions (see :meth:`RateBucketStore.write_through`)."""
        self._store.write_through(writer)

    async def take(self, buckets: Sequence[Bucket]) -> float:
        """Take one token from every bucket, or from none (see :meth:`RateLimiter.take`).

        Raises:
            StoreError: The database failed; no token was taken.
        """
        specs = [
            BucketSpec(key=bucket.key, per_second=bucket.per_second, capacity=float(bucket.capacity))
            for bucket in buckets
        ]
        return await self._store.take(specs)

    async def aclose(self) -> None:
        """Close the limiter's own connection (the engine it was given belongs to the caller)."""
        await self._store.close()


# All-or-nothing across keys needs one atomic step: the script reads every bucket, then writes all or none.
# Time comes from the Redis server, so workers with skewed clocks agree. Numbers are written with %.17g
# because Lua's tostring keeps only 14 digits, too few for epoch seconds with microseconds; the wait is
# returned as a string because Redis truncates a Lua number to an integer. The expiry is capped (about 30
# years) so that a minute rate near zero still gives PEXPIRE an integer rather than 1e+20.
_TAKE_SCRIPT: Final = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local levels = {}
local wait = 0
for i, key in ipairs(KEYS) do
  local rate = tonumber(ARGV[2 * i - 1])
  local capacity = tonumber(ARGV[2 * i])
  local level = capacity
  local state = redis.call('HMGET', key, 'tokens', 'at')
  if state[1] and state[2] then
    local elapsed = math.max(0, now - tonumber(state[2]))
    level = math.min(capacity, tonumber(state[1]) + elapsed * rate)
  end
  levels[i] = level
  if level < 1 then
    wait = math.max(wait, (1 - level) / rate)
  end
end
if wait > 0 then
  return string.format('%.17g', wait)
end
for i, key in ipairs(KEYS) do
  local rate = tonumber(ARGV[2 * i - 1])
  local capacity = tonumber(ARGV[2 * i])
  local left = levels[i] - 1
  redis.call('HSET', key, 'tokens', string.format('%.17g', left), 'at', string.format('%.17g', now))
  redis.call('PEXPIRE', key, math.min(math.ceil((capacity - left) / rate * 1000), 1e12))
end
return '0'
"""


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return parts._replace(netloc=user + netloc).geturl()


class RedisRateLimiter:
    """Buckets in Redis, shared by every worker that uses the same server and prefix.

    Each take is one Lua script (sent once, then called by its hash), atomic across all of the call's buckets and
    timed by the Redis server's clock. A bucket's key expires once it would be full again, so idle users cost
    nothing. A single Redis server (or a primary with replicas) is supported, not Redis Cluster.

    Args:
        url: ``redis://[:password@]host:port/db`` or ``rediss://...``.
        prefix: Put before every bucket key, to share a server with other applications.

    Raises:
        MissingExtraError: The ``redis`` extra is not installed.
    """

    def __init__(self, url: str, *, prefix: str = "botfactory:rl:") -> None:
        try:
            from redis.asyncio import Redis  # the redis extra is optional
        except ImportError:
            raise MissingExtraError("redis", "rate-limit buckets in Redis (gateway.redis_url)") from None
        self._url = _without_password(url)
        self._prefix = prefix
        self._client: Redis = Redis.from_url(url, socket_connect_timeout=5.0, socket_timeout=5.0)
        self._script = self._client.register_script(_TAKE_SCRIPT)

    async def take(self, buckets: Sequence[Bucket]) -> float:
        """Take one token from every bucket, or from none (see :meth:`RateLimiter.take`).

        Raises:
            StoreError: Redis cannot be reached or failed; no token was taken.
        """
        from redis.exceptions import RedisError  # the redis extra is optional

        wanted = _unique(buckets)
        if not wanted:
            return 0.0
        keys = [self._prefix + bucket.key for bucket in wanted]
        args: list[str] = []
        for bucket in wanted:
            args += [repr(bucket.per_second), str(bucket.capacity)]
        try:
            answer = await self._script(keys=keys, args=args)
        except RedisError as exc:
            logger.warning("redis=<%s>, error=<%s> | taking rate-limit tokens failed", self._url, type(exc).__name__)
            raise StoreError(
                f"taking rate-limit tokens from Redis at {self._url} failed: {exc}; check that Redis is running "
                "there, or unset gateway.redis_url to keep the buckets in the database",
                retryable=True,
            ) from exc
        return float(answer)

    async def aclose(self) -> None:
        """Close the connections to Redis."""
        await self._client.aclose()


def rate_limiter_from_settings(settings: GatewaySettings, engine: AsyncEngine) -> RateLimiter:
    """The limiter the settings ask for: Redis when ``redis_url`` is set, else the database behind ``engine``.

    Raises:
        MissingExtraError: ``redis_url`` is set and the ``redis`` extra is not installed.
    """
    if settings.redis_url:
        logger.info("redis=<%s> | rate-limit buckets in Redis", _without_password(settings.redis_url))
        return RedisRateLimiter(settings.redis_url)
    return StoreRateLimiter(engine)
