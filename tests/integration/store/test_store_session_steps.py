"""A session's steps in one read: every turn's recorded steps, in turn then position order, and only this
session's."""

from __future__ import annotations

import pytest

from botfactory.store import StepRecord, Store

pytestmark = pytest.mark.integration


def _step(turn_id: str, position: int, name: str) -> StepRecord:
    return StepRecord(
        turn_id=turn_id,
        position=position,
        agent_path="helper",
        kind="tool",
        name=name,
        input={"n": position},
        output={"ok": True},
        status="completed",
        started_at=10.0 + position,
        finished_at=11.0 + position,
    )


async def _turn(store: Store, session_id: str, turn_id: str, names: list[str]) -> None:
    await store.ensure_session(session_id, bot="helper")
    message = await store.add_message(session_id, role="user", text="go")
    await store.start_turn(session_id, bot="helper", input_message_id=message.id, turn_id=turn_id)
    for position, name in reversed(list(enumerate(names))):  # recorded out of order, read back in order
        await store.record_step(_step(turn_id, position, name))


async def test_a_sessions_steps_come_back_oldest_turn_first_then_by_position(store: Store) -> None:
    await _turn(store, "s1", "turn-a", ["search", "answer"])
    await _turn(store, "s1", "turn-b", ["lookup", "restart", "report"])
    await _turn(store, "other", "turn-c", ["elsewhere"])

    found = await store.list_session_steps("s1")

    assert [(s.turn_id, s.position, s.name) for s in found] == [
        ("turn-a", 0, "search"),
        ("turn-a", 1, "answer"),
        ("turn-b", 0, "lookup"),
        ("turn-b", 1, "restart"),
        ("turn-b", 2, "report"),
    ]
    assert found[0] == _step("turn-a", 0, "search")
    assert await store.list_session_steps("s1", limit=2) == found[:2]
    assert await store.list_session_steps("nobody") == []


async def test_since_keeps_only_the_turns_started_from_then(store: Store) -> None:
    await _turn(store, "s1", "turn-old", ["old"])
    cut = (await store.get_turn("turn-old")).started_at
    await _turn(store, "s1", "turn-new", ["new"])

    assert [s.name for s in await store.list_session_steps("s1", since=cut + 0.5)] == ["new"]
    assert [s.name for s in await store.list_session_steps("s1", since=cut)] == ["old", "new"]
