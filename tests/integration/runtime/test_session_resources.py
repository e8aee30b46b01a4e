"""Session resources: what tools keep in memory for a session is released after the idle timeout, never while a turn
runs; the session's state stays in the store and its next turn starts afresh."""

from __future__ import annotations

import asyncio

from harness import Gate, MakeRuntime

from botfactory.agents import Agent, Bot, Tool, ToolContext
from botfactory.testing import ScriptedModel, call


class Connection:
    def __init__(self) -> None:
        self.closed = False

    async def aclose(self) -> None:
        self.closed = True


def connecting_bot(opened: list[Connection], gate: Gate | None = None) -> Bot:
    async def connect(context: ToolContext) -> str:
        """Open (or reuse) this session's connection."""
        if "connection" not in context.resources:
            opened.append(Connection())
            context.resources["connection"] = opened[-1]
        if gate is not None and gate.arrivals == 0:
            await gate.passage()
        return f"connection {len(opened)}"

    agent = Agent(name="conn", instructions="Connect.", model="small", tools=[Tool(connect)])
    return Bot(name="conn", agent=agent)


async def test_idle_session_resources_are_closed_and_the_next_turn_starts_afresh(make_runtime: MakeRuntime) -> None:
    opened: list[Connection] = []
    model = ScriptedModel([call("connect"), "connected"], cycle=True)
    harness = await make_runtime(bots=[connecting_bot(opened)], models={"small": model}, idle_timeout_s=0.5)
    worker = harness.stack.worker
    assert worker is not None
    await harness.runtime.enqueue("conn", session_id="s", text="one")
    await harness.runtime.enqueue("conn", session_id="s", text="two")
    await harness.wait_turns("s", 2)
    assert len(opened) == 1 and not opened[0].closed  # kept warm between turns of the session
    assert "s" in worker.resources

    async def released() -> bool:
        return opened[0].closed  # by the worker's own maintenance loop

    await harness.wait_for(released, within=3)
    assert "s" not in worker.resources

    await harness.runtime.enqueue("conn", session_id="s", text="three")
    turns = await harness.wait_turns("s", 3)
    assert turns[-1].status == "completed"
    assert len(opened) == 2 and not opened[1].closed
    assert len(await harness.replies("s")) == 3  # the session's state was never in memory only


async def test_a_running_turns_resources_are_not_released_however_long_it_runs(make_runtime: MakeRuntime) -> None:
    opened: list[Connection] = []
    gate = Gate()
    model = ScriptedModel([call("connect"), "connected"])
    harness = await make_runtime(bots=[connecting_bot(opened, gate)], models={"small": model}, idle_timeout_s=0.2)
    worker = harness.stack.worker
    assert worker is not None
    await harness.runtime.enqueue("conn", session_id="s", text="one")
    await gate.wait_arrival()

    await asyncio.sleep(0.3)
    await worker.maintain()
    assert not opened[0].closed

    gate.open()
    await harness.wait_turns("s", 1)

    async def released() -> bool:
        return opened[0].closed  # the worker's own maintenance loop releases it

    await harness.wait_for(released, within=3)
