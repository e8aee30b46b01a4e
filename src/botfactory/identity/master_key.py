"""The vault's master key: from ``BOTFACTORY_MASTER_KEY``, or a key file created with mode 0600 on first use.

A key is 32 random bytes, written as base64url (44 characters). Its id, the first 16 hex characters of its SHA-256,
is stored with every secret it encrypts, so a secret encrypted under another key is reported as such instead of
failing as garbage. The id reveals nothing useful about a 256-bit random key.

The key file is the only copy of a generated key: lose it and every stored secret is lost. Back it up.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import logging
import os
import secrets
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from botfactory.config import Settings
from botfactory.errors import ConfigError

__all__ = ["KEY_BYTES", "MasterKey", "MasterKeySource", "load_master_key", "replace_key_file"]

logger = logging.getLogger(__name__)

KEY_BYTES: Final = 32
"""AES-256."""
GENERATE_HINT: Final = (
    'python -c "import secrets,base64;print(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())"'
)
_OPEN_BITS: Final = stat.S_IRWXG | stat.S_IRWXO

MasterKeySource = Literal["environment", "file", "generated"]


@dataclass(frozen=True)
class MasterKey:
    """A 256-bit master key and where it came from.

    Attributes:
        key: The raw 32 bytes. Never shown in ``repr``.
        source: ``environment`` (``BOTFACTORY_MASTER_KEY``), ``file`` (``master_key_file``) or ``generated``
            (new, not stored anywhere yet).
        path: The key file for ``file``; ``None`` otherwise.
    """

    key: bytes = field(repr=False)
    source: MasterKeySource = "generated"
    path: Path | None = None

    def __post_init__(self) -> None:
        if len(self.key) != KEY_BYTES:
            raise ConfigError(
                f"a master key is {KEY_BYTES} bytes, got {len(self.key)}; generate one with {GENERATE_HINT}"
            )

    @classmethod
    def generate(cls) -> MasterKey:
        """A fresh random key, not stored anywhere."""
        return cls(secrets.token_bytes(KEY_BYTES))

    @classmethod
    def parse(
        cls, text: str, *, where: str, source: MasterKeySource = "generated", path: Path | None = None
    ) -> MasterKey:
        """A key from its base64url text (surrounding whitespace ignored).

        Raises:
            ConfigError: The text is not base64url of 32 bytes; the message names ``where`` and how to make a key.
        """
        stripped = text.strip()
        try:
            raw = base64.urlsafe_b64decode(stripped.encode("ascii"))
            valid = len(raw) == KEY_BYTES and base64.urlsafe_b64encode(raw).decode("ascii") == stripped
        except (binascii.Error, UnicodeEncodeError, ValueError):
            valid = False
        if not valid:
            # The text itself is never quoted: it is meant to be a secret.
            raise ConfigError(
                f"{where} is not a master key: it must be the base64url encoding of {KEY_BYTES} random bytes "
                f"({len(stripped)} characters given, 44 expected); generate one with {GENERATE_HINT}"
            )
        return cls(raw, source, path)

    @property
    def key_id(self) -> str:
        """First 16 hex characters of the key's SHA-256: names the key in rows, listings and errors."""
        return hashlib.sha256(self.key).hexdigest()[:16]

    def encoded(self) -> str:
        """The key as base64url text, the form ``BOTFACTORY_MASTER_KEY`` and the key file hold."""
        return base64.urlsafe_b64encode(self.key).decode("ascii")


def load_master_key(settings: Settings, *, create: bool = True) -> MasterKey:
    """The master key in effect: ``settings.master_key`` if set, else the key file, created on first use.

    Args:
        settings: Resolved settings (``master_key``, ``master_key_file``, ``home``).
        create: Create the key file with a new random key when it does not exist.

    Raises:
        ConfigError: ``BOTFACTORY_MASTER_KEY`` is malformed; the key file is malformed, readable by group or others,
            missing (with ``create=False``) or cannot be read or created.
    """
    if settings.master_key is not None:
        return MasterKey.parse(
            settings.master_key.get_secret_value(), where="BOTFACTORY_MASTER_KEY", source="environment"
        )
    path = settings.resolved_master_key_file
    if not path.exists():
        if not create:
            raise ConfigError(
                f"no master key: {path} does not exist and BOTFACTORY_MASTER_KEY is not set; "
                "restore the key file from your backup or set BOTFACTORY_MASTER_KEY"
            )
        created = _create_key_file(path)
        if created is not None:
            return created
    return _read_key_file(path)


def _create_key_file(path: Path) -> MasterKey | None:
    """Write a new key to ``path`` unless it exists; ``None`` when another process created it first."""
    key = MasterKey.generate()
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return None
    except OSError as exc:
        raise ConfigError(
            f"cannot create the master key file {path}: {exc.strerror or exc}; make its directory writable "
            "or set BOTFACTORY_MASTER_KEY_FILE / BOTFACTORY_MASTER_KEY"
        ) from None
    try:
        _write_all(fd, key)
    except OSError as exc:
        with contextlib.suppress(OSError):
            path.unlink()
        raise ConfigError(f"cannot write the master key file {path}: {exc.strerror or exc}") from None
    logger.warning(
        "path=<%s>, key_id=<%s> | created a new master key for the secrets vault: back it up", path, key.key_id
    )
    return MasterKey(key.key, "file", path)


def _write_all(fd: int, key: MasterKey) -> None:
    try:
        os.fchmod(fd, 0o600)  # the umask can only have narrowed it; make it exact
        os.write(fd, (key.encoded() + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_key_file(path: Path) -> MasterKey:
    try:
        info = path.stat()
    except OSError as exc:
        raise ConfigError(f"cannot read the master key file {path}: {exc.strerror or exc}") from None
    if os.name == "posix" and info.st_mode & _OPEN_BITS:
        raise ConfigError(
            f"the master key file {path} is accessible to group or others (mode {stat.S_IMODE(info.st_mode):o}); "
            f"anyone who reads it can decrypt every secret. Run: chmod 600 {path}"
        )
    # A process that lost the race to create the file may read it before the winner's write lands.
    for _ in range(50):
        try:
            text = path.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            reason = (exc.strerror or str(exc)) if isinstance(exc, OSError) else "it is not text"
            raise ConfigError(f"cannot read the master key file {path}: {reason}") from None
        if text.strip():
            break
        time.sleep(0.01)
    return MasterKey.parse(text, where=f"the master key file {path}", source="file", path=path)


def replace_key_file(path: Path, new: MasterKey, *, old: MasterKey | None) -> Path | None:
    """Atomically make ``path`` hold ``new``, keeping ``old`` beside it as ``<path>.old-<old key id>``.

    The old key is saved first (mode 0600), then the new file is written under a temporary name and renamed over
    ``path``, so at every moment ``path`` holds one whole key.

    Returns:
        Where the old key was saved, or ``None`` without ``old``.

    Raises:
        ConfigError: A file cannot be written; ``path`` is then unchanged.
    """
    kept: Path | None = None
    try:
        if old is not None:
            kept = path.with_name(f"{path.name}.old-{old.key_id}")
            try:
                fd = os.open(kept, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            except FileExistsError:
                # Named after the key's hash: an existing file of that name already holds this key.
                pass
            else:
                _write_all(fd, old)
        temporary = path.with_name(f"{path.name}.tmp-{secrets.token_hex(4)}")
        fd = os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        try:
            _write_all(fd, new)
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise
        _sync_directory(path.parent)
    except OSError as exc:
        raise ConfigError(f"cannot write the master key file {path}: {exc.strerror or exc}") from None
    return kept


def _sync_directory(directory: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
