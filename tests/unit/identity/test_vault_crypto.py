"""The vault's cryptography and master key handling, without a database: AES-GCM bound to (owner, name), clear
errors for altered rows and other keys, the key file's creation and permissions, and a malformed environment key."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from botfactory.config import Settings
from botfactory.errors import ConfigError, SecretUnreadableError
from botfactory.identity import MasterKey, load_master_key, replace_key_file
from botfactory.identity.vault import decrypt, encrypt
from botfactory.store import EncryptedSecret, SecretRecord

CANARY = "canary-7f3a1c-value"


@pytest.fixture(autouse=True)
def no_outside_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's own BOTFACTORY_MASTER_KEY or botfactory.toml must not leak into these tests."""
    for name in ("BOTFACTORY_MASTER_KEY", "BOTFACTORY_MASTER_KEY_FILE", "BOTFACTORY_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def stored(key: MasterKey, *, owner: str = "", name: str = "github_token", value: str = CANARY) -> EncryptedSecret:
    ciphertext, nonce = encrypt(key, owner=owner, name=name, value=value)
    record = SecretRecord(owner=owner, name=name, key_id=key.key_id, created_at=1.0, updated_at=1.0)
    return EncryptedSecret(record=record, ciphertext=ciphertext, nonce=nonce)


def settings(home: Path, **values: object) -> Settings:
    return Settings(home=home, **values)  # type: ignore[arg-type]  # pydantic coerces the test's plain values


def test_round_trip_returns_the_value_and_the_ciphertext_does_not_contain_it() -> None:
    key = MasterKey.generate()
    secret = stored(key, value=CANARY + " ünïcode")

    assert decrypt(key, secret) == CANARY + " ünïcode"
    assert CANARY.encode() not in secret.ciphertext
    assert len(secret.nonce) == 12
    assert stored(key).nonce != stored(key).nonce  # a fresh nonce for every write


def test_a_tampered_ciphertext_is_a_clear_error_not_an_invalid_tag_traceback() -> None:
    key = MasterKey.generate()
    secret = stored(key)
    flipped = bytes([secret.ciphertext[0] ^ 1]) + secret.ciphertext[1:]

    with pytest.raises(SecretUnreadableError, match=r"'github_token' cannot be decrypted.*altered") as caught:
        decrypt(key, dataclasses.replace(secret, ciphertext=flipped))
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert "secrets set github_token" in caught.value.message


@pytest.mark.parametrize(
    ("owner", "name"), [("", "other_token"), ("slack:T1:U2", "github_token")], ids=["other-name", "other-owner"]
)
def test_a_row_copied_onto_another_name_or_owner_fails_to_decrypt(owner: str, name: str) -> None:
    key = MasterKey.generate()
    secret = stored(key, owner="", name="github_token")
    moved = dataclasses.replace(secret, record=dataclasses.replace(secret.record, owner=owner, name=name))

    with pytest.raises(SecretUnreadableError, match="altered or copied from another secret"):
        decrypt(key, moved)


def test_a_secret_under_another_master_key_names_both_keys() -> None:
    old, new = MasterKey.generate(), MasterKey.generate()

    with pytest.raises(SecretUnreadableError) as caught:
        decrypt(new, stored(old, owner="slack:T1:U2"))
    message = caught.value.message
    assert f"encrypted with master key {old.key_id}, but the key in use is {new.key_id}" in message
    assert "restore the old key" in message and "--owner slack:T1:U2" in message


def test_a_key_with_a_forged_key_id_still_fails_cleanly() -> None:
    old, new = MasterKey.generate(), MasterKey.generate()
    secret = stored(old)
    relabelled = dataclasses.replace(secret, record=dataclasses.replace(secret.record, key_id=new.key_id))

    with pytest.raises(SecretUnreadableError, match="cannot be decrypted"):
        decrypt(new, relabelled)


def test_key_id_is_the_sha256_prefix_and_repr_hides_the_key() -> None:
    key = MasterKey.generate()

    assert key.key_id == hashlib.sha256(key.key).hexdigest()[:16]
    assert key.encoded() not in repr(key) and str(key.key) not in repr(key)
    assert MasterKey.parse(key.encoded(), where="test").key == key.key


def test_the_key_file_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    home = tmp_path / "home"

    key = load_master_key(settings(home))

    path = home / "master.key"
    assert (key.source, key.path) == ("file", path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert base64.urlsafe_b64decode(path.read_text().strip()) == key.key
    again = load_master_key(settings(home))
    assert again.key == key.key  # read back, not replaced


def test_the_key_file_setting_relocates_it(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "vault.key"

    key = load_master_key(settings(tmp_path / "home", master_key_file=path))

    assert key.path == path and path.exists() and not (tmp_path / "home" / "master.key").exists()


def test_without_create_a_missing_key_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist and BOTFACTORY_MASTER_KEY is not set"):
        load_master_key(settings(tmp_path), create=False)
    assert not (tmp_path / "master.key").exists()


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_a_key_file_open_to_group_or_others_is_refused(tmp_path: Path, mode: int) -> None:
    key = load_master_key(settings(tmp_path))
    assert key.path is not None
    os.chmod(key.path, mode)

    with pytest.raises(ConfigError, match=f"accessible to group or others \\(mode {mode:o}\\).*chmod 600"):
        load_master_key(settings(tmp_path))


def test_a_malformed_key_file_is_refused_without_quoting_it(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    os.write(fd, b"not-a-key-" + CANARY.encode())
    os.close(fd)

    with pytest.raises(ConfigError, match="is not a master key") as caught:
        load_master_key(settings(tmp_path))
    assert CANARY not in caught.value.message


def test_the_environment_key_wins_over_the_file(tmp_path: Path) -> None:
    key = MasterKey.generate()

    loaded = load_master_key(settings(tmp_path, master_key=SecretStr(key.encoded())))

    assert (loaded.key, loaded.source, loaded.path) == (key.key, "environment", None)
    assert not (tmp_path / "master.key").exists()


@pytest.mark.parametrize(
    "value",
    [
        base64.urlsafe_b64encode(os.urandom(16)).decode(),  # too short
        base64.urlsafe_b64encode(os.urandom(33)).decode(),  # too long
        base64.b64encode(b"\xfb" * 32).decode(),  # standard base64 (+ and /), not base64url
        "x" * 44,  # right length, not base64
        CANARY,
    ],
    ids=["16-bytes", "33-bytes", "not-url-safe", "not-base64", "text"],
)
def test_a_malformed_environment_key_says_how_to_generate_one(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_master_key(settings(tmp_path, master_key=SecretStr(value)))
    message = caught.value.message
    assert "BOTFACTORY_MASTER_KEY is not a master key" in message
    assert "base64.urlsafe_b64encode(secrets.token_bytes(32))" in message
    assert value not in message


def test_the_environment_variable_reaches_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = MasterKey.generate()
    monkeypatch.setenv("BOTFACTORY_MASTER_KEY", key.encoded())
    monkeypatch.setenv("BOTFACTORY_HOME", str(tmp_path))

    loaded = load_master_key(Settings.load())

    assert loaded.key == key.key
    assert key.encoded() not in str(Settings.load().masked())


def test_replacing_the_key_file_keeps_the_old_key_beside_it_with_mode_0600(tmp_path: Path) -> None:
    old = load_master_key(settings(tmp_path))
    assert old.path is not None
    new = MasterKey.generate()

    kept = replace_key_file(old.path, new, old=old)

    assert kept == tmp_path / f"master.key.old-{old.key_id}"
    assert load_master_key(settings(tmp_path)).key == new.key
    assert MasterKey.parse(kept.read_text(), where="old").key == old.key
    for path in (old.path, kept):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["master.key", kept.name]  # no temporary left behind
