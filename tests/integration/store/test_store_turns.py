"""Turns and steps: a turn runs then finishes once, its reply stored in the same transaction."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from botfactory.errors import InvalidInputError, NotFoundError, SessionNotFoundError, StoreError
from botfactory.store import StepRecord, Store, TurnRecord

pytestmark = pytest.mark.integration


class _ClockBrokeError(Exception):
    pass


async def _session_with_input(store: Store, session_id: str = "s") -> str:
    await store.ensure_session(session_id, bot="helper")
    return (await store.add_message(session_id, role="user", text="what is 2+2?")).id


def _step(turn_id: str, position: int, **changes: object) -> StepRecord:
    step = StepRecord(
        turn_id=turn_id,
        position=position,
        agent_path="helper",
        kind="tool",
        name="calculator",
        input={"expression": "2+2", "nested": [1, "two", None]},
        output={"result": 4},
        status="completed",
        started_at=10.0,
        finished_at=11.5,
    )
    return dataclasses.replace(step, **changes)  # type: ignore[arg-type]


async def test_turn_lifecycle_from_running_to_completed(store: Store) -> None:
    input_id = await _session_with_input(store)
    started = await store.start_turn("s", bot="helper", input_message_id=input_id)

    assert started.status == "running"
    assert started.finished_at is None
    assert await store.get_turn(started.id) == started

    finished = await store.finish_turn(started.id, status="completed", reply="4", input_tokens=120, output_tokens=3)
    assert finished == dataclasses.replace(
        started,
        status="completed",
        reply="4",
        input_tokens=120,
        output_tokens=3,
        finished_at=finished.finished_at,
    )
    assert finished.finished_at is not None
    assert finished.finished_at > started.started_at
    assert await store.get_turn(started.id) == finished
    assert await store.list_turns("s") == [finished]


async def test_finished_turn_reply_is_appended_once_as_assistant_message(store: Store) -> None:
    input_id = await _session_with_input(store)
    turn = await store.start_turn("s", bot="helper", input_message_id=input_id, turn_id="turn-1")
    await store.finish_turn("turn-1", status="completed", reply="four")

    with pytest.raises(InvalidInputError, match="already completed"):
        await store.finish_turn("turn-1", status="completed", reply="four")

    history = await store.list_messages("s")
    assert [(m.seq, m.role, m.text, m.turn_id) for m in history] == [
        (1, "user", "what is 2+2?", None),
        (2, "assistant", "four", turn.id),
    ]


async def test_concurrent_finishes_store_exactly_one_reply(store: Store) -> None:
    input_id = await _session_with_input(store)
    turn = await store.start_turn("s", bot="helper", input_message_id=input_id)

    results = await asyncio.gather(
        *(store.finish_turn(turn.id, status="completed", reply=f"reply {i}") for i in range(6)),
        return_exceptions=True,
    )

    winners = [result for result in results if isinstance(result, TurnRecord)]
    assert len(winners) == 1
    assert all(isinstance(result, InvalidInputError) for result in results if result not in winners)
    replies = [m for m in await store.list_messages("s") if m.role == "assistant"]
    assert [m.text for m in replies] == [winners[0].reply]


async def test_finish_turn_that_fails_midway_changes_nothing(store: Store) -> None:
    input_id = await _session_with_input(store)
    turn = await store.start_turn("s", bot="helper", input_message_id=input_id)
    readings: list[float] = []

    def clock_that_breaks_on_the_reply() -> float:
        # finish_turn reads the clock once for the turn, then once for the reply message.
        if readings:
            raise _ClockBrokeError
        readings.append(100.0)
        return 100.0

    broken = Store(store.engine, clock=clock_that_breaks_on_the_reply)
    with pytest.raises(_ClockBrokeError):
        await broken.finish_turn(turn.id, status="completed", reply="lost")

    assert (await store.get_turn(turn.id)).status == "running"
    assert [m.role for m in await store.list_messages("s")] == ["user"]
    finished = await store.finish_turn(turn.id, status="completed", reply="kept")
    assert finished.reply == "kept"


async def test_failed_turn_records_the_error_and_no_reply(store: Store) -> None:
    input_id = await _session_with_input(store)
    turn = await store.start_turn("s", bot="helper", input_message_id=input_id)

    failed = await store.finish_turn(
        turn.id, status="failed", error_code="step_limit", error_message="used 8 steps without an answer"
    )

    assert (failed.status, failed.error_code, failed.reply) == ("failed", "step_limit", None)
    assert failed.error_message == "used 8 steps without an answer"
    assert [m.role for m in await store.list_messages("s")] == ["user"]


async def test_finish_turn_rejects_unknown_turns_and_non_final_status(store: Store) -> None:
    input_id = await _session_with_input(store)
    turn = await store.start_turn("s", bot="helper", input_message_id=input_id)

    with pytest.raises(NotFoundError, match="no turn 'missing'"):
        await store.finish_turn("missing", status="completed", reply="x")
    with pytest.raises(InvalidInputError, match="not 'running'"):
        await store.finish_turn(turn.id, status="running")  # type: ignore[arg-type]
    assert (await store.get_turn(turn.id)).status == "running"


async def test_start_turn_checks_session_bot_and_id(store: Store) -> None:
    input_id = await _session_with_input(store)
    await store.start_turn("s", bot="helper", input_message_id=input_id, turn_id="t1")

    with pytest.raises(SessionNotFoundError):
        await store.start_turn("ghost", bot="helper", input_message_id=None)
    with pytest.raises(InvalidInputError, match="belongs to bot 'helper', not 'reviewer'"):
        await store.start_turn("s", bot="reviewer", input_message_id=input_id)
    with pytest.raises(StoreError, match="turn 't1' already exists"):
        await store.start_turn("s", bot="helper", input_message_id=input_id, turn_id="t1")
    assert [t.id for t in await store.list_turns("s")] == ["t1"]


async def test_turns_are_listed_oldest_first_per_session(store: Store) -> None:
    input_id = await _session_with_input(store)
    await _session_with_input(store, "other")
    first = await store.start_turn("s", bot="helper", input_message_id=input_id)
    await store.start_turn("other", bot="helper", input_message_id=None)
    second = await store.start_turn("s", bot="helper", input_message_id=input_id)

    assert [t.id for t in await store.list_turns("s")] == [first.id, second.id]
    with pytest.raises(NotFoundError):
        await store.get_turn("missing")


async def test_steps_round_trip_in_position_order(store: Store) -> None:
    input_id = await _session_with_input(store)
    turn = await store.start_turn("s", bot="helper", input_message_id=input_id)
    model_step = _step(turn.id, 0, kind="model", name="small", input=[{"role": "user"}], output="call calculator")
    tool_step = _step(turn.id, 1)
    failed_step = _step(turn.id, 2, status="failed", output=None, finished_at=None)

    for step in (tool_step, failed_step, model_step):
        assert await store.record_step(step) == step

    assert await store.list_steps(turn.id) == [model_step, tool_step, failed_step]
    assert await store.list_steps("other-turn") == []


async def test_a_step_position_is_recorded_once(store: Store) -> None:
    input_id = await _session_with_input(store)
    turn = await store.start_turn("s", bot="helper", input_message_id=input_id)
    original = await store.record_step(_step(turn.id, 0))

    with pytest.raises(StoreError, match="already recorded at position 0") as caught:
        await store.record_step(_step(turn.id, 0, output={"result": 5}))

    assert caught.value.code == "store_error"
    assert await store.list_steps(turn.id) == [original]


async def test_step_of_unknown_turn_is_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError, match="no turn 'ghost'"):
        await store.record_step(_step("ghost", 0))
