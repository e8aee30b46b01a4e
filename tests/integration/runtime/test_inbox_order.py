"""The inbox: every message answered once, in arrival order per session, one turn at a time."""

from __future__ import annotations

import asyncio

from harness import MakeRuntime


async def test_messages_are_answered_once_each_in_arrival_order(make_runtime: MakeRuntime) -> None:
    harness = await make_runtime()
    sessions = [f"s-{i}" for i in range(3)]
    for n in range(5):
        for session_id in sessions:
            await harness.runtime.enqueue("echo", session_id=session_id, text=f"{session_id} message {n}")
    await harness.wait_idle(sessions)
    for session_id in sessions:
        view = await harness.runtime.session(session_id)
        replies = [m.text for m in view.messages if m.role == "assistant"]
        assert replies == [f"echo: {session_id} message {n}" for n in range(5)]
        assert [t.status for t in view.turns] == ["completed"] * 5
        assert all(item.status == "done" for item in view.inbox)


async def test_enqueue_with_a_seen_dedup_key_returns_the_first_message(make_runtime: MakeRuntime) -> None:
    harness = await make_runtime(run_worker=False)
    first = await harness.runtime.enqueue("echo", session_id="s", text="hi", dedup_key="evt-1")
    again = await asyncio.gather(
        *(harness.runtime.enqueue("echo", session_id="s", text="hi", dedup_key="evt-1") for _ in range(5))
    )
    assert {e.message_id for e in again} == {first.message_id}
    assert all(e.duplicate for e in again)
    state = await harness.stack.queue.queue_state("s")
    assert state is not None and state.pending == 1
    assert len(await harness.stack.queue.inbox_items("s")) == 1
