"""The secrets vault on SQLite and PostgreSQL: set, get, list, delete and key rotation, with only ciphertext stored."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from botfactory.errors import ConfigError, InvalidInputError, SecretNotFoundError, SecretUnreadableError
from botfactory.identity import MasterKey, SecretInfo, Vault
from botfactory.store import SecretStore, Store
from botfactory.store.schema import secrets

pytestmark = pytest.mark.integration

CANARY = "canary-5d81e0-vault-value"


@pytest.fixture
def secret_store(store: Store, clock: Callable[[], float]) -> SecretStore:
    return SecretStore(store.engine, clock=clock)


@pytest.fixture
def key() -> MasterKey:
    return MasterKey.generate()


@pytest.fixture
def vault(secret_store: SecretStore, key: MasterKey) -> Vault:
    return Vault(secret_store, key)


async def test_set_then_get_returns_the_value_and_only_ciphertext_is_stored(
    store: Store, vault: Vault, key: MasterKey
) -> None:
    info, created = await vault.set("github_token", CANARY)

    assert created and (info.name, info.owner, info.key_id) == ("github_token", "", key.key_id)
    assert await vault.get("github_token") == CANARY
    async with store.engine.connect() as connection:
        row = (await connection.execute(sa.select(secrets))).one()
    assert all(CANARY.encode() not in (value if isinstance(value, bytes) else str(value).encode()) for value in row)
    assert (row.owner, row.name, row.key_id) == ("", "github_token", key.key_id)


async def test_set_replaces_the_value_keeps_created_at_and_moves_updated_at(vault: Vault) -> None:
    first, _ = await vault.set("github_token", "v1")
    second, created = await vault.set("github_token", "v2")

    assert not created
    assert second.created_at == first.created_at and second.updated_at > first.updated_at
    assert await vault.get("github_token") == "v2"
    assert len(await vault.list()) == 1


async def test_owners_have_separate_secrets_of_one_name(vault: Vault) -> None:
    await vault.set("github_token", "platform")
    await vault.set("github_token", "alice's", owner="slack:T1:UALICE")
    await vault.set("github_token", "bob's", owner="slack:T1:UBOB")

    assert await vault.get("github_token") == "platform"
    assert await vault.get("github_token", owner="slack:T1:UALICE") == "alice's"
    assert await vault.get("github_token", owner="slack:T1:UBOB") == "bob's"
    with pytest.raises(SecretNotFoundError, match=r"of owner 'slack:T1:UCAROL'.*--owner slack:T1:UCAROL"):
        await vault.get("github_token", owner="slack:T1:UCAROL")


async def test_list_is_by_owner_then_name_filters_by_owner_and_never_holds_values(vault: Vault) -> None:
    await vault.set("zeta", CANARY)
    await vault.set("alpha", CANARY)
    await vault.set("token", CANARY, owner="slack:T1:U2")

    listed = await vault.list()

    assert [(info.owner, info.name) for info in listed] == [("", "alpha"), ("", "zeta"), ("slack:T1:U2", "token")]
    assert all(isinstance(info, SecretInfo) and CANARY not in repr(info) for info in listed)
    assert [info.name for info in await vault.list(owner="")] == ["alpha", "zeta"]
    assert [info.name for info in await vault.list(owner="slack:T1:U2")] == ["token"]
    assert await vault.list(owner="nobody") == []


async def test_delete_removes_the_secret_and_reports_whether_it_existed(vault: Vault) -> None:
    await vault.set("github_token", CANARY)
    await vault.set("github_token", CANARY, owner="u")

    assert await vault.delete("github_token") is True
    assert await vault.delete("github_token") is False
    with pytest.raises(SecretNotFoundError, match="set it with botfactory secrets set github_token"):
        await vault.get("github_token")
    assert await vault.get("github_token", owner="u") == CANARY  # another owner's is untouched


async def test_rotate_reencrypts_every_secret_and_the_old_key_no_longer_reads_them(
    secret_store: SecretStore, vault: Vault, key: MasterKey
) -> None:
    await vault.set("a", "value a")
    await vault.set("b", "value b", owner="slack:T1:U2")
    before = {(info.owner, info.name): info for info in await vault.list()}
    new_key = MasterKey.generate()

    assert await vault.rotate(new_key) == 2

    assert vault.key_id == new_key.key_id
    assert await vault.get("a") == "value a" and await vault.get("b", owner="slack:T1:U2") == "value b"
    fresh = Vault(secret_store, new_key)
    assert await fresh.get("a") == "value a"
    after = await vault.list()
    assert {info.key_id for info in after} == {new_key.key_id}
    assert all(info.updated_at == before[(info.owner, info.name)].updated_at for info in after)  # values unchanged
    with pytest.raises(SecretUnreadableError, match=f"encrypted with master key {new_key.key_id}"):
        await Vault(secret_store, key).get("a")
    assert await vault.rotate(new_key) == 0  # already under it: an interrupted rotation can simply run again


async def test_a_rotation_that_meets_an_unreadable_secret_changes_nothing(
    store: Store, secret_store: SecretStore, vault: Vault, key: MasterKey
) -> None:
    await vault.set("a", "value a")
    await vault.set("b", "value b")
    async with store.engine.begin() as connection:  # corrupt one row, as a bad restore would
        await connection.execute(secrets.update().where(secrets.c.name == "b").values(nonce=b"\x00" * 12))

    with pytest.raises(SecretUnreadableError, match="'b' cannot be decrypted"):
        await vault.rotate(MasterKey.generate())

    assert vault.key_id == key.key_id
    assert {info.key_id for info in await vault.list()} == {key.key_id}
    assert await vault.get("a") == "value a"


async def test_a_host_with_another_master_key_cannot_write_secrets_others_cannot_read(
    secret_store: SecretStore, vault: Vault, key: MasterKey
) -> None:
    await vault.set("a", "value a")
    stray = MasterKey.generate()  # e.g. a key file created on first use on a host without the shared key

    with pytest.raises(ConfigError, match=f"encrypted with master key {key.key_id}, but the key in use"):
        await Vault(secret_store, stray).set("b", "value b")
    assert [info.name for info in await vault.list()] == ["a"]


@pytest.mark.parametrize(
    ("name", "owner", "value", "match"),
    [
        ("", "", "v", "invalid secret name"),
        ("has space", "", "v", "invalid secret name"),
        ("-leading", "", "v", "invalid secret name"),
        ("n" * 257, "", "v", "invalid secret name"),
        ("ok", "o" * 257, "v", "at most 256 printable"),
        ("ok", "tab\there", "v", "at most 256 printable"),
        ("ok", "", "", "cannot be empty"),
        ("ok", "", "x" * (64 * 1024 + 1), "at most 65536 bytes"),
    ],
    ids=["empty", "space", "dash", "long-name", "long-owner", "control", "empty-value", "huge-value"],
)
async def test_bad_names_owners_and_values_are_refused_on_every_database(
    vault: Vault, name: str, owner: str, value: str, match: str
) -> None:
    with pytest.raises(InvalidInputError, match=match):
        await vault.set(name, value, owner=owner)
    assert await vault.list() == []


async def test_values_never_reach_the_logs(vault: Vault, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    await vault.set("github_token", CANARY, owner="u")
    assert await vault.get("github_token", owner="u") == CANARY
    await vault.rotate(MasterKey.generate())
    await vault.delete("github_token", owner="u")

    assert "github_token" in caplog.text
    assert CANARY not in caplog.text


def database_bytes(directory: Path) -> bytes:
    """The SQLite file and its -wal and -shm companions, as on disk."""
    return b"".join(p.read_bytes() for p in sorted(directory.iterdir()) if p.name.startswith("vault.db"))


async def test_the_sqlite_file_never_holds_the_value(tmp_path: Path) -> None:
    path = tmp_path / "vault.db"
    async with await Store.open(f"sqlite:///{path}") as store:
        vault = Vault(SecretStore(store.engine), MasterKey.generate())
        await vault.set("github_token", CANARY)
        await vault.set("github_token", CANARY + "-second")  # the replaced value must not linger either
        await vault.set("other", CANARY, owner="slack:T1:U2")
        assert await vault.get("github_token") == CANARY + "-second"

    raw = await asyncio.to_thread(database_bytes, tmp_path)
    assert b"github_token" in raw  # names are stored in clear: the search does look at the right bytes
    assert raw.count(CANARY.encode()) == 0
    assert raw.count(CANARY.encode("utf-16-le")) == 0
