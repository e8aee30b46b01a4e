"""Replies to channels that deliver them: sent once, retried when the channel fails, never sent when stale."""

from __future__ import annotations

import asyncio

from harness import GatedModel, Harness, MakeRuntime, echo, echo_bot

from botfactory.runtime import DeliveryError, OutboxDispatcher
from botfactory.runtime.outbox import TRACE_CONTEXT_KEY
from botfactory.store import OutboxRecord


class FakeChannel:
    """A channel that records every delivery attempt and fails the first ``failures`` of them with ``error``."""

    def __init__(self, failures: int = 0, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error or DeliveryError("the channel is down", retry_after_s=0.05)
        self.attempts: list[OutboxRecord] = []

    async def deliver(self, reply: OutboxRecord) -> None:
        self.attempts.append(reply)
        if len(self.attempts) <= self.failures:
            raise self.error


async def outbox_settled(harness: Harness, session_id: str, count: int) -> list[OutboxRecord]:
    """Wait until the session has ``count`` replies and none is waiting for delivery."""

    async def settled() -> bool:
        rows = await harness.stack.queue.outbox_items(session_id)
        return len(rows) == count and all(r.status != "pending" for r in rows)

    await harness.wait_for(settled, within=10)
    return await harness.stack.queue.outbox_items(session_id)


async def test_a_reply_is_delivered_once_to_its_target(make_runtime: MakeRuntime) -> None:
    channel = FakeChannel()
    harness = await make_runtime(deliverers={"test": channel})
    await harness.runtime.enqueue("echo", session_id="s", text="hi", channel="test", reply_to={"thread": "t-1"})

    [reply] = await outbox_settled(harness, "s", 1)
    await asyncio.sleep(0.3)  # the dispatcher keeps running: nothing is sent again
    assert (reply.status, reply.attempts, reply.text) == ("delivered", 1, "echo: hi")
    assert [(a.id, a.text) for a in channel.attempts] == [(reply.id, "echo: hi")]
    target = dict(channel.attempts[0].reply_to or {})
    # With a tracer provider installed the delivery continues the turn's trace, whose context rides along.
    traced = target.pop(TRACE_CONTEXT_KEY, None)
    assert target == {"thread": "t-1"}
    assert traced is None or traced["traceparent"].startswith("00-")


async def test_a_failed_delivery_is_retried_until_it_succeeds(make_runtime: MakeRuntime) -> None:
    channel = FakeChannel(failures=2)
    harness = await make_runtime(deliverers={"test": channel})
    await harness.runtime.enqueue("echo", session_id="s", text="hi", channel="test")

    [reply] = await outbox_settled(harness, "s", 1)
    assert (reply.status, reply.attempts, reply.error) == ("delivered", 3, None)
    assert {a.id for a in channel.attempts} == {reply.id}  # the same row each time: the channel can deduplicate


async def test_a_permanent_delivery_failure_is_recorded_and_not_retried(make_runtime: MakeRuntime) -> None:
    channel = FakeChannel(failures=1, error=DeliveryError("channel_not_found", permanent=True))
    harness = await make_runtime(deliverers={"test": channel})
    await harness.runtime.enqueue("echo", session_id="s", text="hi", channel="test")

    [reply] = await outbox_settled(harness, "s", 1)
    await asyncio.sleep(0.2)
    assert (reply.status, reply.error, len(channel.attempts)) == ("failed", "channel_not_found", 1)


async def test_a_channel_bug_fails_one_attempt_not_the_dispatcher(make_runtime: MakeRuntime) -> None:
    channel = FakeChannel(failures=1, error=KeyError("ts"))
    harness = await make_runtime(deliverers={"test": channel})
    await harness.runtime.enqueue("echo", session_id="s", text="one", channel="test")
    await harness.runtime.enqueue("echo", session_id="s", text="two", channel="test")

    first, second = await outbox_settled(harness, "s", 2)
    assert (first.status, second.status) == ("delivered", "delivered")
    assert first.attempts == 2


async def test_an_overtaken_reply_of_a_coalescing_bot_is_never_delivered(make_runtime: MakeRuntime) -> None:
    channel = FakeChannel()
    model = GatedModel([echo], gated={1}, cycle=True)
    harness = await make_runtime(
        bots=[echo_bot(double_texting="coalesce")], models={"small": model}, deliverers={"test": channel}
    )
    await harness.runtime.enqueue("echo", session_id="s", text="one", channel="test")
    await model.gate.wait_arrival()
    await harness.runtime.enqueue("echo", session_id="s", text="two", channel="test")
    model.gate.open()

    stale, fresh = await outbox_settled(harness, "s", 2)
    assert (stale.text, stale.status, stale.attempts) == ("echo: one", "stale", 0)
    assert (fresh.text, fresh.status) == ("echo: two", "delivered")
    assert [a.text for a in channel.attempts] == ["echo: two"]


async def test_a_reply_that_becomes_stale_before_its_delivery_is_not_sent(make_runtime: MakeRuntime) -> None:
    # The worker's process has no deliverer for the channel: replies wait in the outbox for another process.
    model = GatedModel([echo], gated={2}, cycle=True)
    harness = await make_runtime(bots=[echo_bot(double_texting="coalesce")], models={"small": model})
    await harness.runtime.enqueue("echo", session_id="s", text="one", channel="test")
    await harness.wait_turns("s", 1)
    await harness.runtime.enqueue("echo", session_id="s", text="two", channel="test")
    await model.gate.wait_arrival()  # a newer message is being answered

    channel = FakeChannel()
    dispatcher = OutboxDispatcher(
        store=harness.stack.queue,
        bots=harness.runtime.bots,
        deliverers={"test": channel},
        signals=harness.stack.signals,
    )
    assert await dispatcher.deliver_due() == 1
    [reply] = await harness.stack.queue.outbox_items("s")
    assert (reply.text, reply.status) == ("echo: one", "stale")
    assert channel.attempts == []

    model.gate.open()
    await harness.wait_turns("s", 2)
    assert await dispatcher.deliver_due() == 1
    assert [a.text for a in channel.attempts] == ["echo: two"]


async def test_two_dispatchers_deliver_each_reply_once(make_runtime: MakeRuntime) -> None:
    channel = FakeChannel()
    first = await make_runtime(deliverers={"test": channel})
    await make_runtime(deliverers={"test": channel})
    sessions = [f"s-{n}" for n in range(6)]
    for session_id in sessions:
        for text in ("one", "two"):
            await first.runtime.enqueue("echo", session_id=session_id, text=text, channel="test")

    for session_id in sessions:
        await outbox_settled(first, session_id, 2)
    await asyncio.sleep(0.2)
    delivered = [a.id for a in channel.attempts]
    assert len(delivered) == len(set(delivered)) == 12
