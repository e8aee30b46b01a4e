"""The secrets vault: named values encrypted at rest with AES-256-GCM under a master key kept outside the database.

Each value gets a fresh 96-bit nonce. The associated data binds the ciphertext to its (owner, name), so a row copied
onto another name, or another owner's, fails to decrypt instead of handing out the wrong credential. The database
holds ciphertext, nonce and the id of the master key, never a value or the key; someone with a copy of the database
alone learns the names of the secrets and nothing else.

Values are returned as plain ``str`` to the code that injects them (the tool gateway). They are never logged here,
never part of an error message, and must never be placed in a model's context or a trace.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from botfactory.errors import ConfigError, InvalidInputError, SecretNotFoundError, SecretUnreadableError
from botfactory.identity.master_key import MasterKey
from botfactory.store import EncryptedSecret, SecretRecord, SecretStore

__all__ = ["MAX_VALUE_BYTES", "SecretInfo", "Vault", "decrypt", "encrypt"]

logger = logging.getLogger(__name__)

MAX_VALUE_BYTES: Final = 64 * 1024
"""Largest value the vault takes (UTF-8 bytes): credentials, not files."""
NONCE_BYTES: Final = 12
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/@-]{0,255}")
_AAD_PREFIX: Final = b"botfactory.vault.v1\n"


@dataclass(frozen=True, kw_only=True)
class SecretInfo:
    """A secret as listings show it: never its value.

    Attributes:
        name: The secret's name.
        owner: ``""`` for platform-wide, else the principal it belongs to.
        key_id: The id of the master key that encrypted it.
        created_at: Epoch seconds of the first write.
        updated_at: Epoch seconds of the latest write of its value.
    """

    name: str
    owner: str
    key_id: str
    created_at: float
    updated_at: float

    @classmethod
    def of(cls, record: SecretRecord) -> SecretInfo:
        """The listing view of a stored record."""
        return cls(
            name=record.name,
            owner=record.owner,
            key_id=record.key_id,
            created_at=record.created_at,
            updated_at=record.updated_at,
        )


def _associated_data(owner: str, name: str) -> bytes:
    # JSON keeps the pair unambiguous whatever characters owner and name contain.
    return _AAD_PREFIX + json.dumps([owner, name], ensure_ascii=True).encode("ascii")


def _describe(owner: str, name: str) -> str:
    return f"secret {name!r}" + (f" of owner {owner!r}" if owner else "")


def _set_hint(owner: str, name: str) -> str:
    return f"botfactory secrets set {name}" + (f" --owner {owner}" if owner else "")


def encrypt(key: MasterKey, *, owner: str, name: str, value: str) -> tuple[bytes, bytes]:
    """Encrypt ``value`` for (owner, name) under ``key``; returns ``(ciphertext, nonce)``."""
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = AESGCM(key.key).encrypt(nonce, value.encode("utf-8"), _associated_data(owner, name))
    return ciphertext, nonce


def decrypt(key: MasterKey, stored: EncryptedSecret) -> str:
    """The value of a stored secret.

    Raises:
        SecretUnreadableError: It was encrypted under another master key, or its bytes were altered or belong to
            another (owner, name).
    """
    record = stored.record
    what = _describe(record.owner, record.name)
    if record.key_id != key.key_id:
        raise SecretUnreadableError(
            f"{what} was encrypted with master key {record.key_id}, but the key in use is {key.key_id}; "
            f"restore the old key (a rotation keeps it as master.key.old-{record.key_id}) or set it again: "
            f"{_set_hint(record.owner, record.name)}"
        )
    try:
        plain = AESGCM(key.key).decrypt(stored.nonce, stored.ciphertext, _associated_data(record.owner, record.name))
    except InvalidTag:
        raise SecretUnreadableError(
            f"{what} cannot be decrypted with master key {key.key_id}: its stored bytes were altered or copied from "
            f"another secret; set it again: {_set_hint(record.owner, record.name)}"
        ) from None
    return plain.decode("utf-8")


def _not_found(owner: str, name: str) -> SecretNotFoundError:
    return SecretNotFoundError(
        f"no {_describe(owner, name)} in the vault; set it with {_set_hint(owner, name)} (see `botfactory secrets list`)"
    )


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise InvalidInputError(
            f"invalid secret name {name[:64]!r}: use 1 to 256 letters, digits and _ . : / @ -, starting with a "
            "letter or digit"
        )


def _check_owner(owner: str) -> None:
    if len(owner) > 256 or any(not character.isprintable() for character in owner):
        raise InvalidInputError("a secret's owner must be at most 256 printable characters ('' for platform-wide)")


def _check_value(value: str) -> None:
    # The message states sizes only: the value is a secret.
    size = len(value.encode("utf-8"))
    if size == 0:
        raise InvalidInputError("a secret's value cannot be empty")
    if size > MAX_VALUE_BYTES:
        raise InvalidInputError(f"a secret's value is at most {MAX_VALUE_BYTES} bytes, got {size}")


class Vault:
    """Sets, reads, lists, deletes and re-encrypts secrets; one per process.

    Args:
        store: Where the ciphertext is kept.
        key: The master key in effect (:func:`~botfactory.identity.load_master_key`).
    """

    def __init__(self, store: SecretStore, key: MasterKey) -> None:
        self.store = store
        self._key = key

    @property
    def key_id(self) -> str:
        """The id of the master key in use."""
        return self._key.key_id

    async def set(self, name: str, value: str, *, owner: str = "") -> tuple[SecretInfo, bool]:
        """Store ``value`` under ``name`` (for ``owner``; ``""`` is platform-wide), replacing any previous value.

        Returns:
            The stored secret (without value), and whether it was created rather than replaced.

        Raises:
            InvalidInputError: The name, owner or value is not acceptable.
            StoreError: The database failed.
        """
        _check_name(name)
        _check_owner(owner)
        _check_value(value)
        await self._check_key_in_use()
        ciphertext, nonce = encrypt(self._key, owner=owner, name=name, value=value)
        record, created = await self.store.put(
            owner=owner, name=name, ciphertext=ciphertext, nonce=nonce, key_id=self._key.key_id
        )
        logger.info(
            "secret=<%s>, owner=<%s>, key_id=<%s> | secret %s",
            name,
            owner,
            record.key_id,
            "created" if created else "replaced",
        )
        return SecretInfo.of(record), created

    async def info(self, name: str, *, owner: str = "") -> SecretInfo:
        """A secret's name, owner, key id and dates, without decrypting it.

        Raises:
            SecretNotFoundError: There is no such secret.
        """
        stored = await self.store.get(owner=owner, name=name)
        if stored is None:
            raise _not_found(owner, name)
        return SecretInfo.of(stored.record)

    async def get(self, name: str, *, owner: str = "") -> str:
        """The value of a secret. Hand it to the code that needs it; never log, trace or show it to a model.

        Raises:
            SecretNotFoundError: There is no such secret.
            SecretUnreadableError: It cannot be decrypted with the master key in use.
            StoreError: The database failed.
        """
        stored = await self.store.get(owner=owner, name=name)
        if stored is None:
            raise _not_found(owner, name)
        return decrypt(self._key, stored)

    async def _check_key_in_use(self) -> None:
        # A host that created its own key file (first use without a copy of the shared key) must not write secrets
        # that no other host can read.
        others = await self.store.key_ids() - {self._key.key_id}
        if others:
            where = {"environment": "BOTFACTORY_MASTER_KEY", "file": f"the key file {self._key.path}"}.get(
                self._key.source, "a new key"
            )
            raise ConfigError(
                f"the vault's secrets are encrypted with master key {', '.join(sorted(others))}, but the key in use "
                f"({where}) is {self._key.key_id}; use the same master key on every host: copy the key file or set "
                "BOTFACTORY_MASTER_KEY"
            )

    async def list(self, owner: str | None = None) -> list[SecretInfo]:
        """Every secret (only ``owner``'s when given; ``""`` for platform-wide ones), by owner then name; no values."""
        return [SecretInfo.of(record) for record in await self.store.list(owner=owner)]

    async def delete(self, name: str, *, owner: str = "") -> bool:
        """Delete a secret; whether it existed."""
        deleted = await self.store.delete(owner=owner, name=name)
        if deleted:
            logger.info("secret=<%s>, owner=<%s> | secret deleted", name, owner)
        return deleted

    async def rotate(self, new_key: MasterKey) -> int:
        """Re-encrypt every secret under ``new_key`` in one transaction; afterwards this vault uses ``new_key``.

        Secrets already under ``new_key`` (an interrupted rotation run again) are left as they are. If any secret
        cannot be decrypted with the current key, nothing is changed.

        Returns:
            How many secrets were re-encrypted.

        Raises:
            SecretUnreadableError: A secret cannot be decrypted with the current key; nothing was changed.
            StoreError: The database failed; nothing was changed.
        """
        old = self._key

        def reencrypt(stored: EncryptedSecret) -> tuple[bytes, bytes, str] | None:
            record = stored.record
            if record.key_id == new_key.key_id:
                return None
            value = decrypt(old, stored)
            ciphertext, nonce = encrypt(new_key, owner=record.owner, name=record.name, value=value)
            return ciphertext, nonce, new_key.key_id

        count = await self.store.rewrite_all(reencrypt)
        self._key = new_key
        logger.warning(
            "old_key_id=<%s>, new_key_id=<%s>, secrets=<%d> | master key rotated", old.key_id, new_key.key_id, count
        )
        return count
