"""Durable turns across processes: a turn whose worker crashed or shut down resumes on another worker from its next
step; completed side effects are never repeated, the step in flight re-runs with the same idempotency key, and a
turn past its maximum lifetime ends as ``expired`` with a reply."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from harness import Gate, Harness, MakeRuntime, echo

from botfactory.agents import Agent, Bot, Tool, ToolContext
from botfactory.bots.support.github import GitHubCopilotClient
from botfactory.store import Heartbeat
from botfactory.testing import GitHubStandIn, ScriptedModel, call

REPLY = "Seats granted to mona and octocat."


class SeatTools:
    """Two tools with a side effect on the GitHub stand-in; the second one's n-th run stalls at ``gates[n]`` (if any)
    after its side effect."""

    def __init__(self, client: GitHubCopilotClient) -> None:
        self.client = client
        self.gates = [Gate()]
        self.runs: list[tuple[str, str]] = []

    @property
    def gate(self) -> Gate:
        return self.gates[0]

    def tools(self) -> list[Tool]:
        async def grant_seat(login: str, context: ToolContext) -> str:
            """Give a GitHub user a Copilot seat.

            Args:
                login: The GitHub login.
            """
            self.runs.append(("grant_seat", context.idempotency_key))
            created = await self.client.assign_seats([login], idempotency_key=context.idempotency_key)
            return f"{created} seat(s) created for {login}"

        async def grant_and_welcome(login: str, context: ToolContext) -> str:
            """Give a GitHub user a Copilot seat, then send them a welcome message.

            Args:
                login: The GitHub login.
            """
            run = sum(name == "grant_and_welcome" for name, _ in self.runs)
            self.runs.append(("grant_and_welcome", context.idempotency_key))
            created = await self.client.assign_seats([login], idempotency_key=context.idempotency_key)
            if run < len(self.gates):  # the first run stalls after its side effect: the worker dies here
                await self.gates[run].passage()
            return f"{created} seat(s) created for {login}, welcome sent"

        return [Tool(grant_seat), Tool(grant_and_welcome)]


@pytest.fixture
def standin() -> GitHubStandIn:
    return GitHubStandIn()


@pytest.fixture
async def seat_tools(standin: GitHubStandIn) -> AsyncIterator[SeatTools]:
    transport = httpx.ASGITransport(app=standin.app)
    async with GitHubCopilotClient("http://github.test", standin.org, "demo-token", transport=transport) as client:
        yield SeatTools(client)


def seat_bot(tools: SeatTools) -> Bot:
    return Bot(name="seats", agent=Agent(name="seats", instructions="Grant seats.", model="small", tools=tools.tools()))


FIRST_RUN = [call("grant_seat", login="mona"), call("grant_and_welcome", login="octocat"), REPLY]


async def start_stalled_turn(make_runtime: MakeRuntime, tools: SeatTools, **runtime: float) -> tuple[Harness, str]:
    """Worker A runs the turn until its second tool stalls after assigning the seat."""
    a = await make_runtime(bots=[seat_bot(tools)], models={"small": ScriptedModel(FIRST_RUN)}, **runtime)
    await a.runtime.enqueue("seats", session_id="s", text="seats for mona and octocat")
    await tools.gate.wait_arrival()
    turn_id = (await a.turns("s"))[0].id
    return a, turn_id


async def assert_resumed_once(
    b: Harness, tools: SeatTools, standin: GitHubStandIn, turn_id: str, *, attempts: int
) -> None:
    [turn] = await b.wait_turns("s", 1, within=10)
    assert (turn.status, turn.reply, turn.attempts) == ("completed", REPLY, attempts)
    assert b.stack.worker is not None and b.stack.worker.stats.resumed == 1
    # The completed step ran once; the step in flight ran again with the same key, and GitHub applied each key once.
    assert tools.runs == [
        ("grant_seat", f"{turn_id}:2"),
        ("grant_and_welcome", f"{turn_id}:4"),
        ("grant_and_welcome", f"{turn_id}:4"),
    ]
    assert [c.idempotency_key for c in standin.calls] == [f"{turn_id}:2", f"{turn_id}:4"]
    assert standin.seats == {"mona", "octocat"}
    # Worker B's model was asked only for the last step, and saw both tool results.
    model = b.models["small"]
    assert isinstance(model, ScriptedModel) and len(model.requests) == 1
    assert [m.content for m in model.requests[0].messages if m.role == "tool"] == [
        "1 seat(s) created for mona",
        "1 seat(s) created for octocat, welcome sent",
    ]
    steps = await b.store.list_steps(turn_id)
    assert [(s.position, s.kind, s.name) for s in steps] == [
        (1, "model", "small"),
        (2, "tool", "grant_seat"),
        (3, "model", "small"),
        (4, "tool", "grant_and_welcome"),
        (5, "model", "small"),
    ]
    assert await b.replies("s") == [REPLY]


async def test_a_crashed_workers_turn_resumes_elsewhere_without_repeating_side_effects(
    make_runtime: MakeRuntime, seat_tools: SeatTools, standin: GitHubStandIn
) -> None:
    a, turn_id = await start_stalled_turn(make_runtime, seat_tools, lease_s=0.5, heartbeat_s=0.1)
    assert a.stack.worker is not None
    await a.stack.worker.abort()  # a crash: the lease is not released, the turn stays 'running'
    assert seat_tools.gate.cancelled == 1
    state = await a.stack.queue.queue_state("s")
    assert state is not None and state.turn_id == turn_id and state.leased

    # B's own lease is long: a pause of the test process (a full garbage collection late in a long run) must not
    # let it lapse and count an attempt the test does not expect; only A's short lease matters here.
    b = await make_runtime(bots=[seat_bot(seat_tools)], models={"small": ScriptedModel([REPLY])}, lease_s=10)
    await assert_resumed_once(b, seat_tools, standin, turn_id, attempts=2)


async def test_a_turn_whose_lease_expired_is_fenced_and_its_resumed_attempt_finishes_it(
    make_runtime: MakeRuntime, seat_tools: SeatTools, standin: GitHubStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    seat_tools.gates.append(Gate())  # the second run of the stalling tool stalls too, until the test opens it
    a, turn_id = await start_stalled_turn(make_runtime, seat_tools, lease_s=0.5, heartbeat_s=0.1)
    worker = a.stack.worker
    assert worker is not None

    async def unreachable(leases: object, *, lease_s: float) -> Heartbeat:
        return Heartbeat()  # the heartbeats no longer reach the database (a partition, a stalled process)

    monkeypatch.setattr(a.stack.queue, "heartbeat", unreachable)
    # The lease expires; the session is claimed again (here by the same worker) and the turn resumes at step 4.
    await seat_tools.gates[1].wait_arrival()
    assert worker.stats.resumed == 1
    monkeypatch.undo()

    seat_tools.gates[0].open()  # the first attempt wakes up, finishes its call and tries to record it: fenced
    await asyncio.sleep(0.3)
    assert worker.running == 1  # the resumed attempt is still tracked, heartbeated, and holds the session
    assert [s.position for s in await a.store.list_steps(turn_id)] == [1, 2, 3]

    seat_tools.gates[1].open()
    [turn] = await a.wait_turns("s", 1)
    assert (turn.status, turn.reply, turn.attempts) == ("completed", REPLY, 2)
    assert [s.position for s in await a.store.list_steps(turn_id)] == [1, 2, 3, 4, 5]
    assert [c.idempotency_key for c in standin.calls] == [f"{turn_id}:2", f"{turn_id}:4"]
    assert await a.replies("s") == [REPLY]


async def test_graceful_shutdown_checkpoints_and_hands_the_turn_over_at_once(
    make_runtime: MakeRuntime, seat_tools: SeatTools, standin: GitHubStandIn
) -> None:
    # A lease of 30 s: only a released lease lets worker B start within the few seconds this test allows.
    a, turn_id = await start_stalled_turn(make_runtime, seat_tools, lease_s=30)
    assert a.stack.worker is not None
    await a.stack.worker.stop(grace_s=0.1)
    assert seat_tools.gate.cancelled == 1
    state = await a.stack.queue.queue_state("s")
    assert state is not None and state.turn_id == turn_id and not state.leased
    assert [t.status for t in await a.turns("s")] == ["running"]

    started = time.monotonic()
    b = await make_runtime(bots=[seat_bot(seat_tools)], models={"small": ScriptedModel([REPLY])}, lease_s=30)
    await assert_resumed_once(b, seat_tools, standin, turn_id, attempts=1)  # a clean hand-over gives its attempt back
    assert time.monotonic() - started < 5


async def test_graceful_shutdown_lets_a_turn_finish_within_the_grace_and_claims_nothing_new(
    make_runtime: MakeRuntime, seat_tools: SeatTools
) -> None:
    a, _ = await start_stalled_turn(make_runtime, seat_tools, lease_s=30)
    assert a.stack.worker is not None
    asyncio.get_running_loop().call_later(0.2, seat_tools.gate.open)
    await a.stack.worker.stop(grace_s=10)

    [turn] = await a.turns("s")
    assert (turn.status, turn.attempts, turn.reply) == ("completed", 1, REPLY)
    await a.runtime.enqueue("seats", session_id="s", text="one more")
    await asyncio.sleep(0.3)
    assert len(await a.turns("s")) == 1  # a stopped worker claims nothing


async def test_a_turn_past_its_maximum_lifetime_ends_expired_and_the_session_moves_on(
    make_runtime: MakeRuntime, seat_tools: SeatTools
) -> None:
    a, turn_id = await start_stalled_turn(make_runtime, seat_tools, lease_s=0.5, heartbeat_s=0.1)
    await a.runtime.enqueue("seats", session_id="s", text="and then?")
    assert a.stack.worker is not None
    await a.stack.worker.abort()

    # B claims once A's lease (0.5 s) expired, so the turn started longer ago than B's maximum lifetime.
    b_model = ScriptedModel([echo])
    b = await make_runtime(bots=[seat_bot(seat_tools)], models={"small": b_model}, lease_s=10, max_lifetime_s=0.3)
    first, second = await b.wait_turns("s", 2, within=10)

    assert first.id == turn_id
    assert (first.status, first.error_code) == ("expired", "time_limit")
    assert first.reply is not None and "maximum lifetime" in first.reply
    assert (second.status, second.reply) == ("completed", "echo: and then?")
    assert len(b_model.requests) == 1  # the expired turn did not run again
    assert [r for r in await b.replies("s")] == [first.reply, "echo: and then?"]
    inbox = await b.stack.queue.inbox_items("s")
    assert [i.status for i in inbox] == ["done", "done"]
