"""Workers killed with SIGKILL mid-turn, mid-tool: nothing lost, nothing answered twice, no side effect repeated.

Each message asks the ``seats`` bot for a Copilot seat for its own login on the GitHub stand-in, so every turn has a
side effect. Workers are killed at random while messages arrive and replacements started; leases are short so the
others resume the dead worker's turns quickly. A tool call cut before its step was recorded is re-run with the same
idempotency key, which the stand-in answers from its first response instead of applying again.

Set ``CHAOS_SEED`` to replay a run's choices of victims and pauses (timings still vary).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest_mp import Tables, WorkerPool, answered_once_in_order, deadlocks, enqueuing_runtime, inbox_counts
from workerproc import GITHUB_ORG, GITHUB_TOKEN, SEAT_TOOL, login_of

from botfactory.store import Store
from botfactory.testing import GitHubStandIn, run_standin_server

pytestmark = pytest.mark.chaos

WORKERS = 4
SESSIONS = 30
MESSAGES = 12
MIN_KILLS = 24
ROUND_GAP_S = 0.6
WORKER_ARGS = [
    "--concurrency", "4",
    "--lease-s", "1",
    "--heartbeat-s", "0.2",
    "--max-attempts", "50",
    "--tool-jitter-s", "0.05",
    "--grace-s", "5",
]  # fmt: skip


class RequestCounter:
    """ASGI middleware in front of the stand-in: seat requests received per ``Idempotency-Key``, replays included."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.received: Counter[str | None] = Counter()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            key = dict(scope["headers"]).get(b"idempotency-key")
            self.received[key.decode() if key is not None else None] += 1
        await self.app(scope, receive, send)


async def kill_while_busy(pool: WorkerPool, read: Any, sender: asyncio.Task[None], rng: random.Random) -> int:
    """SIGKILL a random ready worker every 0.2 to 0.5 s, each replaced at once; returns the kills made while turns ran.

    Stops after ``MIN_KILLS`` such kills, or when the work runs out first.
    """
    busy_kills = 0
    while busy_kills < MIN_KILLS:
        await asyncio.sleep(rng.uniform(0.2, 0.5))
        if crashed := pool.crashed():
            raise AssertionError(f"worker {crashed[0].number} exited on its own:\n{pool.log_tail(crashed[0])}")
        counts = await read(inbox_counts)
        if sender.done() and not counts["pending"] + counts["running"]:
            break  # everything answered before enough kills: the test's assertion says so
        victims = [w for w in pool.alive if w.ready]
        if not victims:
            continue  # the replacements are still starting
        pool.kill(rng.choice(victims))
        pool.spawn()
        if counts["running"]:
            busy_kills += 1
    return busy_kills


@pytest.mark.timeout(280)
async def test_sigkilled_workers_lose_no_message_and_repeat_no_reply_or_side_effect(
    database_url: str, tmp_path: Path
) -> None:
    seed = int(os.environ.get("CHAOS_SEED") or time.time_ns() % 1_000_000)
    print(f"CHAOS_SEED={seed}")
    rng = random.Random(seed)
    sessions = [f"chaos-{i:02d}" for i in range(SESSIONS)]
    sent: dict[str, list[str]] = {session_id: [] for session_id in sessions}
    standin = GitHubStandIn(org=GITHUB_ORG, token=GITHUB_TOKEN, members=(), users=())
    for i in range(SESSIONS):
        for n in range(MESSAGES):
            standin.add_member(f"c{i:02d}-m{n:02d}")
    counter = RequestCounter(standin.app)
    standin.app = counter  # type: ignore[assignment]  # served as the stand-in's app from here on
    started = time.monotonic()
    with run_standin_server(standin) as github_url:
        async with await Store.open(database_url) as store:
            deadlocks_before = await deadlocks(store)
            async with enqueuing_runtime(store, database_url) as stack:
                args = [*WORKER_ARGS, "--github", github_url]
                with WorkerPool(url=database_url, directory=tmp_path / "workers", args=args) as pool:
                    for _ in range(WORKERS):
                        pool.spawn()
                    await pool.wait_ready()

                    async def send_rounds() -> None:
                        for n in range(MESSAGES):
                            batch = [(s, f"please seat c{i:02d}-m{n:02d}") for i, s in enumerate(sessions)]
                            await asyncio.gather(
                                *(stack.runtime.enqueue("seats", session_id=s, text=text) for s, text in batch)
                            )
                            for session_id, text in batch:
                                sent[session_id].append(text)
                            await asyncio.sleep(ROUND_GAP_S)

                    sender = asyncio.create_task(send_rounds())
                    kills_started = time.monotonic()
                    busy_kills = await kill_while_busy(pool, stack.queue.writer.read, sender, rng)
                    kill_phase = time.monotonic() - kills_started
                    await sender
                    counts = await pool.drain(stack.queue.writer.read, SESSIONS * MESSAGES, within=120)
                    exits = await pool.stop()
                    errors = pool.errors()
                tables = await stack.queue.writer.read(lambda connection: Tables.read(connection, sessions))
            deadlocks_after = await deadlocks(store)
    elapsed = time.monotonic() - started
    resumed = sum(1 for turn in tables.turns if turn["attempts"] > 1)
    replayed = sum(1 for key, n in counter.received.items() if key is not None and n > 1)
    print(
        f"{SESSIONS * MESSAGES} messages, {pool.kills} kills ({busy_kills} with turns running) in {kill_phase:.1f} s, "
        f"{len(pool.started)} worker processes, {resumed} turns resumed, {replayed} seat requests re-sent after a "
        f"kill, drained in {elapsed:.1f} s"
    )

    # The run was the chaos it claims to be.
    assert busy_kills >= MIN_KILLS, f"only {busy_kills} kills hit running turns: the work ran out first"
    assert resumed > 0, "no turn was resumed by another worker"
    assert replayed > 0, "no kill landed between a seat request and its recorded step"

    # Zero lost messages, zero duplicate replies, order kept.
    assert counts == {"done": SESSIONS * MESSAGES}
    assert answered_once_in_order(tables, sent) == []
    assert len(tables.turns) == len(tables.outbox) == SESSIONS * MESSAGES

    # Every turn: model, seat, model, each recorded once; the seat for the login its message named.
    turn_of_login: dict[str, str] = {}
    message_text = {m["id"]: m["text"] for m in tables.messages}
    for item in tables.inbox:
        turn_of_login[login_of(message_text[item["message_id"]])] = item["turn_id"]
    steps_of: dict[str, list[Any]] = {}
    for step in tables.steps:
        steps_of.setdefault(step["turn_id"], []).append(step)
    bad_steps = [
        (login, [(s["position"], s["kind"], s["status"]) for s in steps_of.get(turn_id, [])])
        for login, turn_id in turn_of_login.items()
        if [(s["position"], s["kind"], s["name"], s["status"]) for s in steps_of.get(turn_id, [])]
        != [(1, "model", "small", "completed"), (2, "tool", SEAT_TOOL, "completed"), (3, "model", "small", "completed")]
        or steps_of[turn_id][1]["input"] != {"arguments": {"login": login}}
    ]
    assert bad_steps == []

    # Zero repeated side effects: each login got its seat once, by the request of its own turn's seat step.
    calls = list(standin.calls)
    applied_twice = [key for key, n in Counter(call.idempotency_key for call in calls).items() if n > 1]
    assert applied_twice == []
    assert sorted(login for call in calls for login in call.usernames) == sorted(turn_of_login)
    assert [call for call in calls if call.seats_created != 1] == []
    assert {call.usernames[0]: call.idempotency_key for call in calls} == {
        login: f"{turn_id}:2" for login, turn_id in turn_of_login.items()
    }
    assert standin.seats == set(turn_of_login)

    assert all(code == 0 for code in exits.values()), f"SIGTERM must stop the survivors gracefully: {exits}"
    assert errors == []
    if deadlocks_before is not None and deadlocks_after is not None:
        assert deadlocks_after - deadlocks_before == 0, (
            "PostgreSQL detected deadlocks among the processes' transactions (see the server log)"
        )
