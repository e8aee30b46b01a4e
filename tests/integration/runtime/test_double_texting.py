"""Double texting: what a message that arrives while the session's turn runs does, per bot policy."""

from __future__ import annotations

import pytest
from harness import GatedModel, Harness, MakeRuntime, echo, echo_bot

from botfactory.errors import SessionBusyError
from botfactory.store import DoubleTexting


async def busy_session(make_runtime: MakeRuntime, policy: DoubleTexting) -> tuple[Harness, GatedModel, str]:
    """A runtime whose first model call waits at a gate: the session's first turn is running."""
    model = GatedModel([echo], gated={1}, cycle=True)
    harness = await make_runtime(bots=[echo_bot(double_texting=policy)], models={"small": model})
    first = await harness.runtime.enqueue("echo", session_id="s", text="one", dedup_key="evt-1")
    await model.gate.wait_arrival()
    return harness, model, first.message_id


async def test_enqueue_answers_each_message_in_its_own_turn_in_order(make_runtime: MakeRuntime) -> None:
    harness, model, _ = await busy_session(make_runtime, "enqueue")
    await harness.runtime.enqueue("echo", session_id="s", text="two")
    await harness.runtime.enqueue("echo", session_id="s", text="three")
    model.gate.open()

    turns = await harness.wait_turns("s", 3)
    assert [(t.status, t.reply) for t in turns] == [
        ("completed", "echo: one"),
        ("completed", "echo: two"),
        ("completed", "echo: three"),
    ]
    assert await harness.replies("s") == ["echo: one", "echo: two", "echo: three"]
    view = await harness.view("s")
    assert [o.status for o in view.outbox] == ["delivered"] * 3


async def test_coalesce_answers_the_messages_sent_meanwhile_in_one_turn_and_drops_the_overtaken_reply(
    make_runtime: MakeRuntime,
) -> None:
    harness, model, first = await busy_session(make_runtime, "coalesce")
    second = await harness.runtime.enqueue("echo", session_id="s", text="two")
    third = await harness.runtime.enqueue("echo", session_id="s", text="three")
    model.gate.open()

    t1, t2 = await harness.wait_turns("s", 2)
    assert (t1.status, t1.reply) == ("completed", "echo: one")
    assert (t2.status, t2.reply) == ("completed", "echo: two\n\nthree")
    assert model.calls == 2
    view = await harness.view("s")
    assert {i.message_id: i.turn_id for i in view.inbox} == {
        first: t1.id,
        second.message_id: t2.id,
        third.message_id: t2.id,
    }
    assert [i.status for i in view.inbox] == ["done"] * 3
    # The first reply was overtaken: stale in the outbox, never part of the conversation.
    assert {o.turn_id: o.status for o in view.outbox} == {t1.id: "stale", t2.id: "delivered"}
    assert await harness.replies("s") == ["echo: two\n\nthree"]
    shown = [(m.role, m.content) for m in model.requests[1].messages if m.role != "system"]
    assert shown == [("user", "one"), ("user", "two\n\nthree")]


@pytest.mark.parametrize("sender", ["same_process", "other_process"])
async def test_interrupt_stops_the_running_turn_in_flight_and_answers_every_message_in_the_next(
    make_runtime: MakeRuntime, sender: str
) -> None:
    harness, model, first = await busy_session(make_runtime, "interrupt")
    if sender == "other_process":
        other = await make_runtime(bots=[echo_bot(double_texting="interrupt")], run_worker=False)
        second = await other.runtime.enqueue("echo", session_id="s", text="two")
    else:
        second = await harness.runtime.enqueue("echo", session_id="s", text="two")
    assert second.interrupted_turn_id is not None

    t1, t2 = await harness.wait_turns("s", 2, within=5)
    assert model.gate.cancelled == 1  # the in-flight model call was cancelled, not waited for
    assert t1.id == second.interrupted_turn_id
    assert (t1.status, t1.reply) == ("interrupted", None)
    assert (t2.status, t2.reply) == ("completed", "echo: one\n\ntwo")
    view = await harness.view("s")
    assert {i.message_id: (i.status, i.turn_id) for i in view.inbox} == {
        first: ("done", t2.id),
        second.message_id: ("done", t2.id),
    }
    assert [(o.turn_id, o.status) for o in view.outbox] == [(t2.id, "delivered")]
    assert await harness.replies("s") == ["echo: one\n\ntwo"]


async def test_reject_refuses_a_message_while_busy_and_writes_nothing(make_runtime: MakeRuntime) -> None:
    harness, model, first = await busy_session(make_runtime, "reject")
    with pytest.raises(SessionBusyError):
        await harness.runtime.enqueue("echo", session_id="s", text="two", dedup_key="evt-2")
    # A retried delivery of the running message is not new work, and not refused either.
    again = await harness.runtime.enqueue("echo", session_id="s", text="one", dedup_key="evt-1")
    assert again.duplicate and again.message_id == first

    view = await harness.view("s")
    assert [m.text for m in view.messages] == ["one"]
    assert [i.message_id for i in view.inbox] == [first]
    assert view.queue is not None and view.queue.pending == 1

    model.gate.open()
    await harness.wait_idle(["s"])
    later = await harness.runtime.enqueue("echo", session_id="s", text="two", dedup_key="evt-2")
    assert not later.duplicate
    await harness.wait_turns("s", 2)
    assert await harness.replies("s") == ["echo: one", "echo: two"]
