"""API key rows on SQLite and PostgreSQL: stored by hash, listed without secrets, revoked for good, last use throttled."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from botfactory.errors import ApiKeyNotFoundError, InvalidInputError, StoreError
from botfactory.identity import ApiKeys, hash_key
from botfactory.store import ApiKeyStore, Store
from botfactory.store.schema import api_keys

pytestmark = pytest.mark.integration


@pytest.fixture
def keys_store(store: Store, clock: Callable[[], float]) -> ApiKeyStore:
    return ApiKeyStore(store.engine, clock=clock)


async def test_a_created_key_is_found_by_its_hash_and_only_the_hash_is_stored(
    store: Store, keys_store: ApiKeyStore
) -> None:
    issued = await ApiKeys(keys_store).create(bot="support", name="ci")

    found = await keys_store.find_by_hash(hash_key(issued.secret))

    assert found == issued.record
    async with store.engine.connect() as connection:
        row = (await connection.execute(sa.select(api_keys))).one()
    assert issued.secret not in [str(value) for value in row]
    assert row.hash == hash_key(issued.secret)
    assert await keys_store.find_by_hash(hash_key("bf_other")) is None


async def test_two_keys_with_one_hash_cannot_exist(keys_store: ApiKeyStore) -> None:
    await keys_store.create(key_id="key_a", prefix="bf_a", key_hash="0" * 64, bot=None, name=None)

    with pytest.raises(StoreError, match="creating an API key failed"):
        await keys_store.create(key_id="key_b", prefix="bf_b", key_hash="0" * 64, bot=None, name=None)
    assert [record.id for record in await keys_store.list()] == ["key_a"]


@pytest.mark.parametrize(("bot", "name"), [("", None), ("b" * 129, None), ("support", "n" * 257)])
async def test_bot_and_name_out_of_bounds_are_invalid_on_every_database(
    keys_store: ApiKeyStore, bot: str, name: str | None
) -> None:
    with pytest.raises(InvalidInputError, match="must be 1 to"):
        await keys_store.create(key_id="key_x", prefix="bf_x", key_hash="1" * 64, bot=bot, name=name)


async def test_list_is_oldest_first_and_hides_revoked_keys_unless_asked(keys_store: ApiKeyStore) -> None:
    keys = ApiKeys(keys_store)
    first = await keys.create(bot="support", name="first")
    second = await keys.create(bot=None, name="second")
    third = await keys.create(bot="billing")

    await keys.revoke(second.record.id)

    assert [r.id for r in await keys.list()] == [first.record.id, third.record.id]
    listed = await keys.list(include_revoked=True)
    assert [r.id for r in listed] == [first.record.id, second.record.id, third.record.id]
    assert [r.revoked for r in listed] == [False, True, False]
    assert await keys_store.count_active() == 2


async def test_revoke_is_once_and_for_all_and_an_unknown_id_is_not_found(keys_store: ApiKeyStore) -> None:
    issued = await ApiKeys(keys_store).create(bot="support")

    record, changed = await keys_store.revoke(issued.record.id)
    again, changed_again = await keys_store.revoke(issued.record.id)

    assert changed and not changed_again
    assert record.revoked_at is not None and again.revoked_at == record.revoked_at
    found = await keys_store.find_by_hash(hash_key(issued.secret))
    assert found is not None and found.revoked
    with pytest.raises(ApiKeyNotFoundError, match="no API key 'key_nope'") as caught:
        await keys_store.revoke("key_nope")
    assert caught.value.http_status == 404
    with pytest.raises(ApiKeyNotFoundError):
        await keys_store.get("key_nope")


async def test_touch_writes_last_use_at_most_once_per_interval(keys_store: ApiKeyStore) -> None:
    issued = await ApiKeys(keys_store).create(bot="support")
    key_id = issued.record.id

    assert await keys_store.touch(key_id, now=1000.0)
    assert not await keys_store.touch(key_id, now=1030.0)
    assert (await keys_store.get(key_id)).last_used_at == 1000.0
    assert await keys_store.touch(key_id, now=1060.0)
    assert (await keys_store.get(key_id)).last_used_at == 1060.0


async def test_many_servers_touching_at_once_write_once(keys_store: ApiKeyStore) -> None:
    issued = await ApiKeys(keys_store).create(bot="support")

    written = await asyncio.gather(*(keys_store.touch(issued.record.id, now=5000.0) for _ in range(8)))

    assert sorted(written) == [False] * 7 + [True]
