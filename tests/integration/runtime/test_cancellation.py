"""Cancelling a session stops its running turn wherever it runs, the call in flight (a sub-agent's model call, an
HTTP request), and its unanswered messages, and leaves a durable ``cancelled`` state."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from harness import GatedModel, Harness, MakeRuntime, echo, echo_bot

from botfactory.agents import Agent, Bot, Tool
from botfactory.testing import ScriptedModel, call


def router_bot(*tools: Tool) -> Bot:
    specialist = Agent(name="specialist", instructions="Look things up.", model="small", tools=list(tools))
    return Bot(name="router", agent=Agent(name="router", instructions="Route.", model="large", tools=[specialist]))


async def assert_cancelled(harness: Harness, router: ScriptedModel) -> None:
    [turn] = await harness.wait_turns("s", 1, within=5)
    assert (turn.status, turn.error_code, turn.reply) == ("cancelled", "cancelled", None)
    view = await harness.view("s")
    assert [i.status for i in view.inbox] == ["cancelled", "cancelled"]
    assert view.to_dict()["state"] == "idle"
    assert view.outbox == []
    assert len(router.requests) == 1  # the router never went on after its sub-agent was stopped
    await asyncio.sleep(0.3)
    assert len(await harness.turns("s")) == 1  # the cancelled message is not picked up again


@pytest.mark.parametrize("canceller", ["same_process", "other_process"])
async def test_cancel_stops_a_sub_agents_model_call_in_flight(make_runtime: MakeRuntime, canceller: str) -> None:
    router = ScriptedModel([call("specialist", request="look it up"), "never reached"])
    specialist = GatedModel(["never reached"])
    harness = await make_runtime(bots=[router_bot()], models={"large": router, "small": specialist})
    await harness.runtime.enqueue("router", session_id="s", text="question")
    await harness.runtime.enqueue("router", session_id="s", text="follow-up")
    await specialist.gate.wait_arrival()

    other = await make_runtime(bots=[router_bot()], run_worker=False) if canceller == "other_process" else harness
    result = await other.runtime.cancel("s")

    assert result.running and result.cancelled_messages == 1
    await assert_cancelled(harness, router)
    assert specialist.gate.cancelled == 1


class SlowServer:
    """An HTTP server on 127.0.0.1 that never answers, and notices when the client hangs up."""

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self.disconnected = asyncio.Event()
        self.url = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        self.requested.set()
        await reader.read()  # returns at end of stream: the client closed the connection
        self.disconnected.set()
        writer.close()


@pytest.fixture
async def slow_server() -> AsyncIterator[SlowServer]:
    slow = SlowServer()
    server = await asyncio.start_server(slow.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    slow.url = f"http://127.0.0.1:{port}/report"
    async with server:
        yield slow
        server.close()


async def test_cancel_aborts_a_tools_http_request_in_flight(make_runtime: MakeRuntime, slow_server: SlowServer) -> None:
    async def fetch_report() -> str:
        """Fetch the latest report."""
        async with httpx.AsyncClient(timeout=30) as client:
            return (await client.get(slow_server.url)).text

    router = ScriptedModel([call("specialist", request="get the report"), "never reached"])
    specialist = ScriptedModel([call("fetch_report"), "never reached"])
    harness = await make_runtime(
        bots=[router_bot(Tool(fetch_report))], models={"large": router, "small": specialist}, lease_s=5
    )
    await harness.runtime.enqueue("router", session_id="s", text="report please")
    await harness.runtime.enqueue("router", session_id="s", text="and another")
    await asyncio.wait_for(slow_server.requested.wait(), 5)

    await harness.runtime.cancel("s")

    await asyncio.wait_for(slow_server.disconnected.wait(), 5)
    await assert_cancelled(harness, router)
    assert len(specialist.requests) == 1


async def test_cancel_of_queued_work_with_no_turn_running(make_runtime: MakeRuntime) -> None:
    taker = await make_runtime(run_worker=False)
    await taker.runtime.enqueue("echo", session_id="s", text="one")
    await taker.runtime.enqueue("echo", session_id="s", text="two")

    result = await taker.runtime.cancel("s")
    assert (result.running, result.turn_id, result.cancelled_messages) == (False, None, 2)

    worker = await make_runtime()
    await worker.runtime.enqueue("echo", session_id="s", text="three")
    [turn] = await worker.wait_turns("s", 1)
    assert turn.reply == "echo: three"
    assert [i.status for i in await worker.stack.queue.inbox_items("s")] == ["cancelled", "cancelled", "done"]


async def test_cancel_of_a_turn_whose_worker_died_ends_it_at_once(make_runtime: MakeRuntime) -> None:
    model = GatedModel([echo])
    crashed = await make_runtime(bots=[echo_bot()], models={"small": model}, lease_s=0.3, heartbeat_s=0.1)
    await crashed.runtime.enqueue("echo", session_id="s", text="one")
    await model.gate.wait_arrival()
    assert crashed.stack.worker is not None
    await crashed.stack.worker.abort()
    await asyncio.sleep(0.4)  # the lease expires; no worker holds the turn

    result = await crashed.runtime.cancel("s")

    assert not result.running and result.turn_id is not None
    [turn] = await crashed.turns("s")
    assert (turn.id, turn.status) == (result.turn_id, "cancelled")
    assert [i.status for i in await crashed.stack.queue.inbox_items("s")] == ["cancelled"]
    state = await crashed.stack.queue.queue_state("s")
    assert state is not None and (state.turn_id, state.pending, state.ready_at) == (None, 0, None)


async def test_a_cancel_asked_while_the_worker_is_dead_holds_when_another_worker_takes_over(
    make_runtime: MakeRuntime,
) -> None:
    model = GatedModel([echo])
    crashed = await make_runtime(models={"small": model}, lease_s=0.5, heartbeat_s=0.1)
    await crashed.runtime.enqueue("echo", session_id="s", text="one")
    await model.gate.wait_arrival()
    assert crashed.stack.worker is not None
    await crashed.stack.worker.abort()

    result = await crashed.runtime.cancel("s")  # the lease has not expired yet: the dead worker seems to hold it
    assert result.running

    survivor_model = ScriptedModel([echo], cycle=True)
    survivor = await make_runtime(models={"small": survivor_model}, lease_s=10)
    [turn] = await survivor.wait_turns("s", 1, within=5)
    assert (turn.status, turn.error_code) == ("cancelled", "cancelled")
    assert survivor_model.requests == []
    assert [i.status for i in await survivor.stack.queue.inbox_items("s")] == ["cancelled"]
