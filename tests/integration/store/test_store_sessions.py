"""Sessions: created once per key, bound to one bot, listed newest first."""

from __future__ import annotations

import asyncio

import pytest

from botfactory.errors import InvalidInputError, SessionNotFoundError
from botfactory.store import SessionRecord, Store

pytestmark = pytest.mark.integration


async def test_ensure_session_creates_once_and_returns_the_same_record(store: Store) -> None:
    first = await store.ensure_session("T1:C1:1700.1", bot="helper", user_id="U1")
    again = await store.ensure_session("T1:C1:1700.1", bot="helper", user_id="U2")

    assert again == first
    assert first == SessionRecord(
        id="T1:C1:1700.1",
        bot="helper",
        user_id="U1",
        status="active",
        created_at=first.created_at,
        updated_at=first.created_at,
    )
    assert await store.get_session("T1:C1:1700.1") == first


async def test_ensure_session_from_many_workers_at_once_creates_one_session(store: Store) -> None:
    records = await asyncio.gather(*(store.ensure_session("race", bot="helper") for _ in range(20)))

    assert len({record.created_at for record in records}) == 1
    assert [s.id for s in await store.list_sessions()] == ["race"]


async def test_a_session_of_another_bot_is_refused(store: Store) -> None:
    await store.ensure_session("shared-key", bot="helper")

    with pytest.raises(InvalidInputError, match="belongs to bot 'helper', not 'reviewer'"):
        await store.ensure_session("shared-key", bot="reviewer")
    assert (await store.get_session("shared-key")).bot == "helper"


async def test_get_session_of_unknown_id_raises_not_found(store: Store) -> None:
    with pytest.raises(SessionNotFoundError, match="no session 'nope'") as caught:
        await store.get_session("nope")
    assert caught.value.code == "session_not_found"


@pytest.mark.parametrize("session_id", ["", "x" * 257])
async def test_session_ids_out_of_bounds_are_invalid_on_every_database(store: Store, session_id: str) -> None:
    with pytest.raises(InvalidInputError, match="session id must be 1 to 256 characters"):
        await store.ensure_session(session_id, bot="helper")


async def test_list_sessions_newest_first_filtered_and_limited(store: Store) -> None:
    for index in range(5):
        await store.ensure_session(f"s{index}", bot="helper" if index % 2 == 0 else "reviewer")

    assert [s.id for s in await store.list_sessions()] == ["s4", "s3", "s2", "s1", "s0"]
    assert [s.id for s in await store.list_sessions(bot="helper")] == ["s4", "s2", "s0"]
    assert [s.id for s in await store.list_sessions(limit=2)] == ["s4", "s3"]
    assert await store.list_sessions(bot="nobody") == []
