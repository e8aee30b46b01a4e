"""Persistence of API keys: one row per key with the SHA-256 hash of its secret, never the secret itself.

Issuing and checking keys is :mod:`botfactory.identity`'s job; this module only reads and writes rows, the same way
on SQLite and PostgreSQL.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from botfactory.errors import ApiKeyNotFoundError, InvalidInputError
from botfactory.store.engine import database_error, reading, writing
from botfactory.store.schema import api_keys

__all__ = ["ApiKeyRecord", "ApiKeyStore"]

_COLUMNS = (
    api_keys.c.id,
    api_keys.c.prefix,
    api_keys.c.bot,
    api_keys.c.name,
    api_keys.c.created_at,
    api_keys.c.last_used_at,
    api_keys.c.revoked_at,
)


@dataclass(frozen=True, kw_only=True)
class ApiKeyRecord:
    """A stored API key, without its secret or hash.

    Attributes:
        id: ``key_<random>``; names the key in listings and in ``botfactory keys revoke``.
        prefix: The first characters of the secret, so a person can tell which key a client holds.
        bot: The one bot the key may use, or ``None`` for every bot.
        name: What the key is for, as its creator wrote it.
        created_at: Epoch seconds.
        last_used_at: Epoch seconds of a recent use (updated at most about once a minute), or ``None``.
        revoked_at: Epoch seconds of the revocation, or ``None`` while the key is valid.
    """

    id: str
    prefix: str
    bot: str | None
    name: str | None
    created_at: float
    last_used_at: float | None
    revoked_at: float | None

    @property
    def revoked(self) -> bool:
        """Whether the key was revoked."""
        return self.revoked_at is not None


def _record(row: sa.RowMapping) -> ApiKeyRecord:
    return ApiKeyRecord(
        id=row["id"],
        prefix=row["prefix"],
        bot=row["bot"],
        name=row["name"],
        created_at=float(row["created_at"]),
        last_used_at=None if row["last_used_at"] is None else float(row["last_used_at"]),
        revoked_at=None if row["revoked_at"] is None else float(row["revoked_at"]),
    )


def _check_length(what: str, value: str | None, column: sa.Column[str]) -> None:
    # SQLite would store an over-long value that PostgreSQL rejects; fail the same way on both.
    if value is None:
        return
    limit = column.type.length if isinstance(column.type, sa.String) else None
    if not value or (limit is not None and len(value) > limit):
        raise InvalidInputError(f"{what} must be 1 to {limit} characters, got {len(value)}")


class ApiKeyStore:
    """Reads and writes the ``api_keys`` table.

    Args:
        engine: An async engine on SQLite or PostgreSQL whose schema is at revision 0003 or later.
        clock: Current time in epoch seconds; tests inject one.
    """

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._clock = clock

    async def create(
        self, *, key_id: str, prefix: str, key_hash: str, bot: str | None, name: str | None
    ) -> ApiKeyRecord:
        """Store a new key.

        Args:
            key_id: The key's public id, ``key_<random>``.
            prefix: The first characters of the secret.
            key_hash: SHA-256 hex digest of the secret.
            bot: The one bot the key may use, or ``None`` for every bot.
            name: What the key is for.

        Raises:
            InvalidInputError: ``bot`` or ``name`` is empty or too long.
            StoreError: The database failed, or the id or hash already exists.
        """
        _check_length("the bot name", bot, api_keys.c.bot)
        _check_length("the key name", name, api_keys.c.name)
        record = ApiKeyRecord(
            id=key_id, prefix=prefix, bot=bot, name=name, created_at=self._clock(), last_used_at=None, revoked_at=None
        )
        doing = "creating an API key"
        try:
            async with writing(self._engine, doing) as connection:
                await connection.execute(
                    api_keys.insert().values(
                        id=key_id, prefix=prefix, hash=key_hash, bot=bot, name=name, created_at=record.created_at
                    )
                )
        except sa.exc.IntegrityError as exc:  # a repeated id or hash: astronomically unlikely, never overwritten
            raise database_error(exc, self._engine.url, doing=doing) from exc
        return record

    async def find_by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        """The key whose secret hashes to ``key_hash``, revoked or not; ``None`` when there is none."""
        query = sa.select(*_COLUMNS, api_keys.c.hash).where(api_keys.c.hash == key_hash)
        async with reading(self._engine, "looking up an API key") as connection:
            row = (await connection.execute(query)).first()
        return None if row is None else _record(row._mapping)

    async def get(self, key_id: str) -> ApiKeyRecord:
        """The key with ``key_id``.

        Raises:
            ApiKeyNotFoundError: No key has that id.
        """
        async with reading(self._engine, "reading an API key") as connection:
            row = (await connection.execute(sa.select(*_COLUMNS).where(api_keys.c.id == key_id))).first()
        if row is None:
            raise _not_found(key_id)
        return _record(row._mapping)

    async def list(self, *, include_revoked: bool = False) -> list[ApiKeyRecord]:
        """Every key, oldest first; revoked ones only when asked for."""
        query = sa.select(*_COLUMNS).order_by(api_keys.c.created_at, api_keys.c.id)
        if not include_revoked:
            query = query.where(api_keys.c.revoked_at.is_(None))
        async with reading(self._engine, "listing API keys") as connection:
            rows = (await connection.execute(query)).all()
        return [_record(row._mapping) for row in rows]

    async def count_active(self) -> int:
        """How many keys are not revoked."""
        query = sa.select(sa.func.count()).select_from(api_keys).where(api_keys.c.revoked_at.is_(None))
        async with reading(self._engine, "counting API keys") as connection:
            return int((await connection.execute(query)).scalar_one())

    async def revoke(self, key_id: str) -> tuple[ApiKeyRecord, bool]:
        """Revoke a key for good. Revoking a revoked key changes nothing.

        Returns:
            The key as stored afterwards, and whether this call revoked it.

        Raises:
            ApiKeyNotFoundError: No key has that id.
        """
        async with writing(self._engine, "revoking an API key") as connection:
            changed = await connection.execute(
                api_keys.update()
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=self._clock())
            )
            row = (await connection.execute(sa.select(*_COLUMNS).where(api_keys.c.id == key_id))).first()
        if row is None:
            raise _not_found(key_id)
        return _record(row._mapping), changed.rowcount > 0

    async def touch(self, key_id: str, *, now: float | None = None, min_interval_s: float = 60.0) -> bool:
        """Record a use of the key, unless one was recorded less than ``min_interval_s`` ago.

        The condition is part of the UPDATE, so several server processes together still write about once per
        interval.

        Returns:
            Whether the row was updated.
        """
        at = self._clock() if now is None else now
        recent = api_keys.c.last_used_at > at - min_interval_s
        async with writing(self._engine, "recording an API key's use") as connection:
            changed = await connection.execute(
                api_keys.update()
                .where(api_keys.c.id == key_id, sa.or_(api_keys.c.last_used_at.is_(None), sa.not_(recent)))
                .values(last_used_at=at)
            )
        return changed.rowcount > 0


def _not_found(key_id: str) -> ApiKeyNotFoundError:
    return ApiKeyNotFoundError(f"no API key '{key_id}'; see `botfactory keys list --all` for the ids")
