"""API keys: issue them, and turn a presented secret into a :class:`Principal`.

A key looks like ``bf_`` followed by 43 URL-safe characters (32 random bytes). Only its SHA-256 hash is stored:
the secret is random and long, so a fast hash is enough (a slow password hash guards guessable secrets). Keys are
looked up by that hash, never by the secret: how long a lookup takes depends on the hash of what the caller sent,
which tells an attacker nothing about any stored secret, so no comparison of secrets needs to be constant-time. Checked
keys are cached in the process for ``ttl_s`` seconds so that a request does not read the database every time; a
revoked key therefore stops working in every server process within that time.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from botfactory.errors import BotfactoryError, ForbiddenError, UnauthenticatedError
from botfactory.store import ApiKeyRecord, ApiKeyStore

__all__ = [
    "KEY_PREFIX",
    "LOCAL_PRINCIPAL",
    "ApiKeys",
    "IssuedKey",
    "Principal",
    "PrincipalKind",
    "hash_key",
    "new_key_id",
    "new_secret",
]

logger = logging.getLogger(__name__)

KEY_PREFIX: Final = "bf_"
"""Every secret starts with this, so secret scanners and people can recognise a botfactory key."""
_SHOWN_CHARS: Final = 8
"""Random characters of the secret kept as the key's ``prefix`` for listings (``bf_`` + 8)."""
_SECRET_CHARS: Final = 43
"""``secrets.token_urlsafe(32)`` is 43 characters."""
_KEY_SHAPE: Final = re.compile(re.escape(KEY_PREFIX) + "[A-Za-z0-9_-]{" + str(_SECRET_CHARS) + "}")
_CACHE_MAX: Final = 10_000
"""Keys (known and unknown) remembered at most; a flood of random keys cannot grow memory without bound."""

PrincipalKind = Literal["api_key", "jwt", "local"]


@dataclass(frozen=True, kw_only=True)
class Principal:
    """Who is calling: an API key, a user with an OpenID Connect token, or a local request from this machine.

    Attributes:
        kind: ``api_key``, ``jwt`` (a bearer token from the ``[oidc]`` issuer) or ``local`` (no key, from
            localhost, in ``botfactory up``).
        key_id: The key's id for ``api_key``; ``None`` otherwise.
        bot: The one bot the caller may use, or ``None`` for every bot.
        user_id: The user a ``jwt`` caller is, ``oidc:<issuer host and path>:<subject>``; messages it sends are
            that user's. ``None`` for API keys, which may name any user.
        groups: The user's groups from the token's groups claim.
        scopes: The token's scopes.
        client_id: The OAuth client the token was issued to (``azp`` or ``client_id``).
    """

    kind: PrincipalKind
    key_id: str | None = None
    bot: str | None = None
    user_id: str | None = None
    groups: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    client_id: str | None = None

    def allows_bot(self, name: str) -> bool:
        """Whether the caller may talk to bot ``name``."""
        return self.bot is None or self.bot == name

    def check_bot(self, name: str) -> None:
        """Refuse a caller limited to another bot than ``name``.

        Raises:
            ForbiddenError: The caller may not use bot ``name``.
        """
        if self.allows_bot(name):
            return
        if self.kind == "jwt":
            raise ForbiddenError(
                f"JWT callers may only use bot '{self.bot}', not '{name}'; "
                "use an API key for that bot or change [oidc] bot"
            )
        raise ForbiddenError(
            f"API key {self.key_id} may only use bot '{self.bot}', not '{name}'; "
            "create a key for that bot with `botfactory keys create --bot NAME`"
        )


LOCAL_PRINCIPAL: Final = Principal(kind="local")
"""A request without a key from this machine in local development mode: every bot."""


@dataclass(frozen=True, kw_only=True)
class IssuedKey:
    """A key just created: the only time its secret is known.

    Attributes:
        record: The stored key (id, prefix, bot, name, times).
        secret: The key to hand to the client; it cannot be shown again.
    """

    record: ApiKeyRecord
    secret: str


def new_secret() -> str:
    """A fresh random secret: ``bf_`` + 43 URL-safe characters (256 bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def new_key_id() -> str:
    """A fresh public key id, ``key_`` + 16 hex characters."""
    return "key_" + secrets.token_hex(8)


def hash_key(secret: str) -> str:
    """SHA-256 hex digest of a secret, as stored."""
    return hashlib.sha256(secret.encode()).hexdigest()


def _well_formed(secret: str) -> bool:
    return _KEY_SHAPE.fullmatch(secret) is not None


@dataclass(frozen=True)
class _Cached:
    expires: float
    record: ApiKeyRecord | None


class ApiKeys:
    """Issues, lists, revokes and verifies API keys; one per process, shared by all requests.

    Args:
        store: Where keys are kept.
        ttl_s: How long a checked key (valid, revoked or unknown) is trusted without reading the store again.
        touch_interval_s: ``last_used_at`` is written at most this often per key.
        clock: Monotonic seconds for the cache; tests inject one to expire entries without sleeping.
    """

    def __init__(
        self,
        store: ApiKeyStore,
        *,
        ttl_s: float = 10.0,
        touch_interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self._touch_interval_s = touch_interval_s
        self._clock = clock
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        self._touched: dict[str, float] = {}

    async def create(self, *, bot: str | None, name: str | None = None) -> IssuedKey:
        """Create a key for ``bot`` (``None``: every bot) and return it with its secret.

        Raises:
            InvalidInputError: ``bot`` or ``name`` is empty or too long.
        """
        secret = new_secret()
        record = await self.store.create(
            key_id=new_key_id(),
            prefix=secret[: len(KEY_PREFIX) + _SHOWN_CHARS],
            key_hash=hash_key(secret),
            bot=bot,
            name=name,
        )
        logger.info("key_id=<%s>, bot=<%s> | API key created", record.id, bot or "*")
        return IssuedKey(record=record, secret=secret)

    async def list(self, *, include_revoked: bool = False) -> list[ApiKeyRecord]:
        """Every key, oldest first, without secrets."""
        return await self.store.list(include_revoked=include_revoked)

    async def any_active(self) -> bool:
        """Whether at least one key is not revoked."""
        return await self.store.count_active() > 0

    async def revoke(self, key_id: str) -> tuple[ApiKeyRecord, bool]:
        """Revoke a key. This process forgets it at once; other processes within ``ttl_s``.

        Returns:
            The key and whether this call revoked it (``False``: it was revoked before).

        Raises:
            ApiKeyNotFoundError: No key has that id.
        """
        record, changed = await self.store.revoke(key_id)
        for key_hash, cached in list(self._cache.items()):
            if cached.record is not None and cached.record.id == key_id:
                del self._cache[key_hash]
        if changed:
            logger.info("key_id=<%s> | API key revoked", key_id)
        return record, changed

    def forget(self) -> None:
        """Drop every cached check, so the next request of each key reads the store."""
        self._cache.clear()

    async def authenticate(self, secret: str) -> Principal:
        """The principal a presented secret stands for.

        Raises:
            UnauthenticatedError: The secret is malformed, unknown or revoked.
            StoreError: The store could not be read.
        """
        if not _well_formed(secret):
            raise UnauthenticatedError(
                "the API key is malformed: botfactory keys start with 'bf_'; "
                "create one with `botfactory keys create --bot NAME`"
            )
        key_hash = hash_key(secret)
        now = self._clock()
        cached = self._cache.get(key_hash)
        if cached is None or cached.expires <= now:
            record = await self.store.find_by_hash(key_hash)
            cached = _Cached(expires=now + self.ttl_s, record=record)
            self._remember(key_hash, cached)
        if cached.record is None:
            raise UnauthenticatedError(
                "unknown API key; send Authorization: Bearer <key> with a key from `botfactory keys create --bot NAME`"
            )
        record = cached.record
        if record.revoked:
            raise UnauthenticatedError(
                f"API key {record.id} was revoked; create a new one with `botfactory keys create --bot NAME`"
            )
        await self._touch(record.id, now)
        return Principal(kind="api_key", key_id=record.id, bot=record.bot)

    def _remember(self, key_hash: str, cached: _Cached) -> None:
        self._cache[key_hash] = cached
        self._cache.move_to_end(key_hash)
        while len(self._cache) > _CACHE_MAX:
            self._cache.popitem(last=False)

    async def _touch(self, key_id: str, now: float) -> None:
        last = self._touched.get(key_id)
        if last is not None and now - last < self._touch_interval_s:
            return
        self._touched[key_id] = now
        try:
            await self.store.touch(key_id, min_interval_s=self._touch_interval_s)
        except BotfactoryError as exc:
            # Only a statistic: a request must not fail because it could not be recorded.
            logger.warning("key_id=<%s> | cannot record the API key's use: %s", key_id, exc.message)
