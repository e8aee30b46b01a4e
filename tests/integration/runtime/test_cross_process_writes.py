"""Two processes writing to the same sessions at once (one takes messages, the other answers them) never fail a
write and never deadlock: no lost enqueue, no failed attempt, every message answered once in order."""

from __future__ import annotations

import asyncio
import logging

import pytest
from harness import MakeRuntime


async def test_enqueues_racing_with_another_processs_turns_all_succeed(
    make_runtime: MakeRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="botfactory.store.writer")
    taker = await make_runtime(run_worker=False)
    worker = await make_runtime(heartbeat_s=0.05)
    sessions = [f"s-{n}" for n in range(16)]

    for n in range(8):
        # Each round lands while the previous round's turns finish on the other process.
        await asyncio.gather(
            *(taker.runtime.enqueue("echo", session_id=s, text=f"{s} m{n}", user_id="u1") for s in sessions)
        )
        await asyncio.sleep(0.002 * (n % 3))
    await worker.wait_idle(sessions, within=60)

    for session_id in sessions:
        view = await worker.view(session_id)
        assert [m.text for m in view.messages if m.role == "assistant"] == [
            f"echo: {session_id} m{n}" for n in range(8)
        ]
        assert {(t.status, t.attempts) for t in view.turns} == {("completed", 1)}
    assert worker.stack.worker is not None and worker.stack.worker.stats.failed_attempts == 0
    # Not even a deadlock PostgreSQL had to break (each one stalls both processes for deadlock_timeout).
    assert [
        r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING or "deadlock" in r.getMessage()
    ] == []


async def test_messages_sent_while_another_process_ends_turns_on_the_session_never_deadlock(
    make_runtime: MakeRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="botfactory.store.writer")
    taker = await make_runtime(run_worker=False)
    worker = await make_runtime()
    for n in range(40):  # one at a time: each lands while the previous message's turn ends on the other process
        await taker.runtime.enqueue("echo", session_id="s", text=f"m{n}")
        await asyncio.sleep(0.001 * (n % 4))
    await worker.wait_idle(["s"], within=60)

    assert await worker.replies("s") == [f"echo: m{n}" for n in range(40)]
    assert [r.getMessage() for r in caplog.records if "deadlock" in r.getMessage()] == []
