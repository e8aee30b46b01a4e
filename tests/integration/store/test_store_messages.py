"""Messages: numbered in arrival order per session, without gaps, even under concurrent writers."""

from __future__ import annotations

import asyncio

import pytest

from botfactory.errors import InvalidInputError, SessionNotFoundError
from botfactory.store import Store

pytestmark = pytest.mark.integration


async def test_messages_are_numbered_from_one_in_arrival_order(store: Store) -> None:
    await store.ensure_session("s", bot="helper")
    first = await store.add_message("s", role="user", text="hello", user_id="U1")
    second = await store.add_message("s", role="assistant", text="hi there")

    assert (first.seq, second.seq) == (1, 2)
    assert first.user_id == "U1"
    assert first.turn_id is None
    assert await store.list_messages("s") == [first, second]


async def test_adding_a_message_marks_the_session_active(store: Store) -> None:
    created = await store.ensure_session("s", bot="helper")
    message = await store.add_message("s", role="user", text="ping")

    session = await store.get_session("s")
    assert session.updated_at == message.created_at
    assert session.updated_at > created.updated_at


async def test_sessions_are_numbered_independently(store: Store) -> None:
    for session_id in ("a", "b"):
        await store.ensure_session(session_id, bot="helper")
    await store.add_message("a", role="user", text="a1")
    await store.add_message("a", role="user", text="a2")
    b1 = await store.add_message("b", role="user", text="b1")

    assert b1.seq == 1
    assert [m.text for m in await store.list_messages("a")] == ["a1", "a2"]


async def test_concurrent_writers_get_distinct_gapless_seqs(store: Store, database_url: str) -> None:
    # Two stores are two connection pools, as two worker processes would have.
    await store.ensure_session("busy", bot="helper")
    async with await Store.open(database_url, migrate=False) as other:
        added = await asyncio.gather(
            *((store if index % 2 else other).add_message("busy", role="user", text=f"m{index}") for index in range(40))
        )

    listed = await store.list_messages("busy")
    assert sorted(m.seq for m in added) == list(range(1, 41))
    assert [m.seq for m in listed] == list(range(1, 41))
    assert sorted(m.text for m in listed) == sorted(f"m{index}" for index in range(40))


async def test_list_messages_with_limit_returns_the_latest_in_order(store: Store) -> None:
    await store.ensure_session("s", bot="helper")
    for index in range(5):
        await store.add_message("s", role="user", text=f"m{index}")

    assert [m.text for m in await store.list_messages("s", limit=2)] == ["m3", "m4"]
    assert await store.list_messages("unknown") == []


async def test_message_to_unknown_session_raises_and_stores_nothing(store: Store) -> None:
    with pytest.raises(SessionNotFoundError, match="ensure_session"):
        await store.add_message("ghost", role="user", text="boo")
    assert await store.list_messages("ghost") == []


async def test_unknown_role_is_invalid(store: Store) -> None:
    await store.ensure_session("s", bot="helper")
    with pytest.raises(InvalidInputError, match="unknown message role 'robot'"):
        await store.add_message("s", role="robot", text="beep")  # type: ignore[arg-type]
    assert await store.list_messages("s") == []
