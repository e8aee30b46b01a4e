"""Dead letters: a message whose turn fails every attempt is retried with backoff, then parked with the reason; the
session goes on with its next message, and an operator can put the dead one back in the queue."""

from __future__ import annotations

from harness import GatedModel, MakeRuntime, echo, echo_bot

from botfactory.errors import ModelUnavailableError
from botfactory.inference import ModelRequest


class FlakyModel:
    """A script item that fails on messages containing "poison" while ``failing`` is set, and echoes otherwise."""

    def __init__(self) -> None:
        self.failing = True
        self.poison_calls = 0

    def __call__(self, request: ModelRequest) -> str:
        last = next(m for m in reversed(request.messages) if m.role == "user")
        if "poison" in (last.content or "") and self.failing:
            self.poison_calls += 1
            raise ModelUnavailableError("the model server is down")
        return echo(request)


async def test_a_failing_message_is_retried_with_backoff_then_dead_lettered_and_can_be_retried(
    make_runtime: MakeRuntime,
) -> None:
    flaky = FlakyModel()
    harness = await make_runtime(script=[flaky], max_attempts=3, backoff_base_s=0.1, backoff_max_s=1.0)
    poison = await harness.runtime.enqueue("echo", session_id="s", text="poison")
    await harness.runtime.enqueue("echo", session_id="s", text="fine")

    dead_turn, next_turn = await harness.wait_turns("s", 2, within=10)
    assert (dead_turn.status, dead_turn.error_code, dead_turn.attempts) == ("failed", "dead_letter", 3)
    assert flaky.poison_calls == 3
    [dead] = await harness.stack.queue.dead_letters()
    assert dead.message_id == poison.message_id and dead.status == "dead"
    assert (
        dead.error is not None and "gave up after 3 attempts" in dead.error and "the model server is down" in dead.error
    )
    # The attempts were spaced by the backoff (0.1 s, then 0.2 s, each with +-20 % jitter).
    events = await harness.stack.queue.events_after("s", 0)
    starts = [e.created_at for e in events if e.type == "turn_started" and e.turn_id == dead_turn.id]
    assert len(starts) == 3
    assert starts[1] - starts[0] >= 0.08 and starts[2] - starts[1] >= 0.16
    # The session went on with the next message.
    assert (next_turn.status, next_turn.reply) == ("completed", "echo: fine")

    flaky.failing = False
    await harness.stack.queue.retry_dead_letter(poison.message_id)
    turns = await harness.wait_turns("s", 3)
    assert (turns[-1].status, turns[-1].reply) == ("completed", "echo: poison")
    assert await harness.stack.queue.dead_letters() == []
    assert await harness.replies("s") == ["echo: fine", "echo: poison"]
    statuses = {i.message_id: i.status for i in await harness.stack.queue.inbox_items("s")}
    assert statuses[poison.message_id] == "retried"


async def test_a_turn_whose_workers_keep_dying_is_dead_lettered(make_runtime: MakeRuntime) -> None:
    model = GatedModel([echo])
    crashed = await make_runtime(models={"small": model}, lease_s=0.3, heartbeat_s=0.1)
    message = await crashed.runtime.enqueue("echo", session_id="s", text="crashes its worker")
    await crashed.runtime.enqueue("echo", session_id="s", text="after")
    await model.gate.wait_arrival()
    assert crashed.stack.worker is not None
    await crashed.stack.worker.abort()

    survivor = await make_runtime(bots=[echo_bot()], lease_s=10, max_attempts=1)
    dead_turn, next_turn = await survivor.wait_turns("s", 2, within=10)

    assert (dead_turn.status, dead_turn.error_code) == ("failed", "dead_letter")
    [dead] = await survivor.stack.queue.dead_letters()
    assert dead.message_id == message.message_id
    assert dead.error is not None and "the worker running it stopped" in dead.error
    assert next_turn.reply == "echo: after"
