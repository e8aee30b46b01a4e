"""API keys without a database: their shape, the hash that is stored, the cache and its expiry, and principals."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import Any, cast

import pytest

from botfactory.errors import StoreError, UnauthenticatedError
from botfactory.identity import LOCAL_PRINCIPAL, ApiKeys, Principal, hash_key, new_key_id, new_secret
from botfactory.identity import api_keys as api_keys_module
from botfactory.store import ApiKeyRecord, ApiKeyStore


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class MemoryKeyStore:
    """The ApiKeyStore interface over a dict, counting lookups and writes of last use."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[str, ApiKeyRecord]] = {}
        self.lookups = 0
        self.touches: list[str] = []
        self.fail_touch = False

    async def create(self, *, key_id: str, prefix: str, key_hash: str, bot: str | None, name: str | None) -> Any:
        record = ApiKeyRecord(
            id=key_id, prefix=prefix, bot=bot, name=name, created_at=1.0, last_used_at=None, revoked_at=None
        )
        self.rows[key_id] = (key_hash, record)
        return record

    async def find_by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        self.lookups += 1
        return next((record for stored, record in self.rows.values() if stored == key_hash), None)

    async def revoke(self, key_id: str) -> tuple[ApiKeyRecord, bool]:
        key_hash, record = self.rows[key_id]
        revoked = dataclasses.replace(record, revoked_at=2.0)
        self.rows[key_id] = (key_hash, revoked)
        return revoked, not record.revoked

    async def touch(self, key_id: str, *, now: float | None = None, min_interval_s: float = 60.0) -> bool:
        if self.fail_touch:
            raise StoreError("database is locked")
        self.touches.append(key_id)
        return True


@pytest.fixture
def store() -> MemoryKeyStore:
    return MemoryKeyStore()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def keys(store: MemoryKeyStore, clock: FakeClock) -> ApiKeys:
    return ApiKeys(cast(ApiKeyStore, store), ttl_s=10.0, touch_interval_s=60.0, clock=clock)


def test_a_secret_is_bf_and_43_urlsafe_characters_and_never_repeats() -> None:
    secrets = {new_secret() for _ in range(200)}

    assert len(secrets) == 200
    assert all(re.fullmatch(r"bf_[A-Za-z0-9_-]{43}", secret) for secret in secrets)
    assert re.fullmatch(r"key_[0-9a-f]{16}", new_key_id())


def test_the_stored_hash_is_sha256_hex_of_the_secret() -> None:
    secret = new_secret()

    assert hash_key(secret) == hashlib.sha256(secret.encode()).hexdigest()
    assert hash_key(secret) != hash_key(secret[:-1] + ("A" if secret[-1] != "A" else "B"))


async def test_create_stores_the_hash_and_a_short_prefix_never_the_secret(keys: ApiKeys, store: MemoryKeyStore) -> None:
    issued = await keys.create(bot="support", name="ci")

    stored_hash, record = store.rows[issued.record.id]
    assert stored_hash == hash_key(issued.secret)
    assert issued.secret not in repr(record)
    assert record.prefix == issued.secret[:11]
    assert (record.bot, record.name) == ("support", "ci")


async def test_a_valid_key_becomes_a_principal_scoped_to_its_bot(keys: ApiKeys) -> None:
    issued = await keys.create(bot="support")

    principal = await keys.authenticate(issued.secret)

    assert principal == Principal(kind="api_key", key_id=issued.record.id, bot="support")
    assert principal.allows_bot("support")
    assert not principal.allows_bot("billing")


def test_an_unscoped_key_and_the_local_principal_allow_every_bot() -> None:
    assert Principal(kind="api_key", key_id="key_1", bot=None).allows_bot("anything")
    assert LOCAL_PRINCIPAL.kind == "local"
    assert LOCAL_PRINCIPAL.allows_bot("support")


@pytest.mark.parametrize("secret", ["", "nope", "bf_short", "sk_" + "a" * 43, "bf_" + "a" * 42 + "!", "bf_" + "é" * 43])
async def test_malformed_keys_are_refused_without_reading_the_store(
    keys: ApiKeys, store: MemoryKeyStore, secret: str
) -> None:
    with pytest.raises(UnauthenticatedError, match="malformed"):
        await keys.authenticate(secret)
    assert store.lookups == 0


async def test_an_unknown_key_is_refused_and_the_message_does_not_echo_it(keys: ApiKeys) -> None:
    secret = new_secret()

    with pytest.raises(UnauthenticatedError) as caught:
        await keys.authenticate(secret)

    assert caught.value.http_status == 401
    assert "unknown API key" in caught.value.message
    assert secret not in caught.value.message


async def test_checks_within_the_ttl_are_served_from_memory(
    keys: ApiKeys, store: MemoryKeyStore, clock: FakeClock
) -> None:
    issued = await keys.create(bot=None)
    unknown = new_secret()

    for _ in range(50):
        await keys.authenticate(issued.secret)
        with pytest.raises(UnauthenticatedError):
            await keys.authenticate(unknown)
    assert store.lookups == 2

    clock.now += 10.0
    await keys.authenticate(issued.secret)
    assert store.lookups == 3


async def test_a_key_revoked_elsewhere_stops_working_when_the_ttl_runs_out(
    keys: ApiKeys, store: MemoryKeyStore, clock: FakeClock
) -> None:
    issued = await keys.create(bot="support")
    await keys.authenticate(issued.secret)

    await store.revoke(issued.record.id)  # another process, e.g. `botfactory keys revoke`
    clock.now += 9.9
    assert (await keys.authenticate(issued.secret)).key_id == issued.record.id  # still trusted from the cache

    clock.now += 0.1
    with pytest.raises(UnauthenticatedError, match=f"{issued.record.id} was revoked"):
        await keys.authenticate(issued.secret)


async def test_a_key_revoked_through_the_same_object_stops_working_at_once(keys: ApiKeys) -> None:
    issued = await keys.create(bot="support")
    await keys.authenticate(issued.secret)

    record, changed = await keys.revoke(issued.record.id)

    assert changed and record.revoked
    with pytest.raises(UnauthenticatedError, match="revoked"):
        await keys.authenticate(issued.secret)


async def test_last_use_is_written_at_most_once_per_interval(
    keys: ApiKeys, store: MemoryKeyStore, clock: FakeClock
) -> None:
    issued = await keys.create(bot="support")

    for _ in range(20):
        await keys.authenticate(issued.secret)
        clock.now += 1.0
    assert store.touches == [issued.record.id]

    clock.now += 60.0
    await keys.authenticate(issued.secret)
    assert store.touches == [issued.record.id] * 2


async def test_a_failed_write_of_last_use_does_not_fail_the_request(
    keys: ApiKeys, store: MemoryKeyStore, caplog: pytest.LogCaptureFixture
) -> None:
    issued = await keys.create(bot="support")
    store.fail_touch = True

    principal = await keys.authenticate(issued.secret)

    assert principal.key_id == issued.record.id
    assert "cannot record the API key's use" in caplog.text
    assert issued.secret not in caplog.text


async def test_the_cache_is_bounded_under_a_flood_of_random_keys(
    keys: ApiKeys, store: MemoryKeyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api_keys_module, "_CACHE_MAX", 5)
    issued = await keys.create(bot="support")
    await keys.authenticate(issued.secret)

    for _ in range(20):
        with pytest.raises(UnauthenticatedError):
            await keys.authenticate(new_secret())

    assert len(keys._cache) == 5
    lookups = store.lookups
    await keys.authenticate(issued.secret)  # evicted: read again, still valid
    assert store.lookups == lookups + 1
