"""Persistence of the secrets vault: one row per (owner, name) holding ciphertext, never a value.

Encrypting and decrypting is :mod:`botfactory.identity`'s job; this module only reads and writes rows, the same way
on SQLite and PostgreSQL, and never sees a master key or a plaintext value.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from botfactory.store.engine import database_error, reading, writing
from botfactory.store.schema import secrets

__all__ = ["EncryptedSecret", "SecretRecord", "SecretStore"]

_META = (secrets.c.owner, secrets.c.name, secrets.c.key_id, secrets.c.created_at, secrets.c.updated_at)
_ALL = (*_META, secrets.c.ciphertext, secrets.c.nonce)


@dataclass(frozen=True, kw_only=True)
class SecretRecord:
    """A stored secret without its ciphertext: what listings show.

    Attributes:
        owner: ``""`` for a platform-wide secret, else the principal it belongs to.
        name: The secret's name, unique per owner.
        key_id: Which master key encrypted it.
        created_at: Epoch seconds of the first write.
        updated_at: Epoch seconds of the latest write.
    """

    owner: str
    name: str
    key_id: str
    created_at: float
    updated_at: float


@dataclass(frozen=True, kw_only=True)
class EncryptedSecret:
    """A stored secret with its ciphertext and nonce, as the vault decrypts it.

    Attributes:
        record: Owner, name, key id and times.
        ciphertext: AES-GCM output, authentication tag included.
        nonce: The 12-byte nonce it was encrypted with.
    """

    record: SecretRecord
    ciphertext: bytes = field(repr=False)
    nonce: bytes = field(repr=False)


def _record(row: sa.RowMapping) -> SecretRecord:
    return SecretRecord(
        owner=row["owner"],
        name=row["name"],
        key_id=row["key_id"],
        created_at=float(row["created_at"]),
        updated_at=float(row["updated_at"]),
    )


def _encrypted(row: sa.RowMapping) -> EncryptedSecret:
    return EncryptedSecret(record=_record(row), ciphertext=bytes(row["ciphertext"]), nonce=bytes(row["nonce"]))


def _key(owner: str, name: str) -> sa.ColumnElement[bool]:
    return sa.and_(secrets.c.owner == owner, secrets.c.name == name)


Rewrite = Callable[[EncryptedSecret], tuple[bytes, bytes, str] | None]
"""Given a stored secret, its new ``(ciphertext, nonce, key_id)``, or ``None`` to leave it as it is."""


class SecretStore:
    """Reads and writes the ``secrets`` table.

    Args:
        engine: An async engine on SQLite or PostgreSQL whose schema is at revision 0004 or later.
        clock: Current time in epoch seconds; tests inject one.
    """

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._clock = clock

    async def put(
        self, *, owner: str, name: str, ciphertext: bytes, nonce: bytes, key_id: str
    ) -> tuple[SecretRecord, bool]:
        """Store a secret's ciphertext, replacing the one stored under the same (owner, name).

        Returns:
            The record as stored, and whether it was created (``False``: an existing secret was replaced).

        Raises:
            StoreError: The database failed.
        """
        now = self._clock()
        doing = "storing a secret"
        try:
            async with writing(self._engine, doing) as connection:
                # begin_write locks before this read (SQLite) and the row is locked for update (PostgreSQL), so
                # two writers of one name cannot both see it missing. A brand-new name on PostgreSQL can still race
                # with another insert; the loser gets the IntegrityError below, and nothing is half-written.
                query = sa.select(secrets.c.created_at).where(_key(owner, name))
                if connection.dialect.name == "postgresql":
                    query = query.with_for_update()
                created_at = (await connection.execute(query)).scalar_one_or_none()
                values = {"ciphertext": ciphertext, "nonce": nonce, "key_id": key_id, "updated_at": now}
                if created_at is None:
                    await connection.execute(secrets.insert().values(owner=owner, name=name, created_at=now, **values))
                else:
                    await connection.execute(secrets.update().where(_key(owner, name)).values(**values))
        except sa.exc.IntegrityError as exc:
            raise database_error(exc, self._engine.url, doing=doing) from exc
        record = SecretRecord(
            owner=owner,
            name=name,
            key_id=key_id,
            created_at=now if created_at is None else float(created_at),
            updated_at=now,
        )
        return record, created_at is None

    async def get(self, *, owner: str, name: str) -> EncryptedSecret | None:
        """The stored secret with that (owner, name), or ``None``."""
        async with reading(self._engine, "reading a secret") as connection:
            row = (await connection.execute(sa.select(*_ALL).where(_key(owner, name)))).first()
        return None if row is None else _encrypted(row._mapping)

    async def list(self, *, owner: str | None = None) -> list[SecretRecord]:
        """Every secret (of ``owner`` only, when given), ordered by owner then name; never ciphertext."""
        query = sa.select(*_META).order_by(secrets.c.owner, secrets.c.name)
        if owner is not None:
            query = query.where(secrets.c.owner == owner)
        async with reading(self._engine, "listing secrets") as connection:
            rows = (await connection.execute(query)).all()
        return [_record(row._mapping) for row in rows]

    async def key_ids(self) -> set[str]:
        """The ids of the master keys that encrypted the stored secrets (one, except during a rotation)."""
        async with reading(self._engine, "listing the vault's master keys") as connection:
            return set((await connection.execute(sa.select(secrets.c.key_id).distinct())).scalars())

    async def delete(self, *, owner: str, name: str) -> bool:
        """Delete a secret; whether there was one."""
        async with writing(self._engine, "deleting a secret") as connection:
            deleted = await connection.execute(secrets.delete().where(_key(owner, name)))
        return deleted.rowcount > 0

    async def rewrite_all(self, rewrite: Rewrite) -> int:
        """Rewrite every stored secret in one transaction, e.g. to re-encrypt it under a new master key.

        Every row is read and locked first; ``rewrite`` is called on each and its result written. If ``rewrite``
        raises, nothing is changed. ``updated_at`` stays: it dates the value, which a re-encryption keeps.

        Returns:
            How many rows were rewritten.

        Raises:
            StoreError: The database failed; nothing was changed.
        """
        doing = "re-encrypting secrets"
        changed = 0
        async with writing(self._engine, doing) as connection:
            query = sa.select(*_ALL).order_by(secrets.c.owner, secrets.c.name)
            if connection.dialect.name == "postgresql":
                query = query.with_for_update()
            rows = (await connection.execute(query)).all()
            for row in rows:
                stored = _encrypted(row._mapping)
                new = rewrite(stored)
                if new is None:
                    continue
                ciphertext, nonce, key_id = new
                await connection.execute(
                    secrets.update()
                    .where(_key(stored.record.owner, stored.record.name))
                    .values(ciphertext=ciphertext, nonce=nonce, key_id=key_id)
                )
                changed += 1
        return changed
