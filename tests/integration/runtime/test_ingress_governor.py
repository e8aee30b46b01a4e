"""``botfactory up``: a worker sharing the process with the channels runs fewer turns while the loop runs late."""

from __future__ import annotations

import asyncio

import pytest
from harness import Gate, GatedModel, MakeRuntime, echo

pytestmark = pytest.mark.integration


async def test_the_worker_runs_no_more_turns_than_the_governor_allows(make_runtime: MakeRuntime) -> None:
    gate = Gate()
    harness = await make_runtime(
        models={"small": GatedModel([echo], gate=gate, cycle=True)}, serves_ingress=True, concurrency=8
    )
    worker = harness.stack.worker
    assert worker is not None and worker.governor is not None
    governor = worker.governor
    await governor.stop()  # hold the cap still: this test sets it by hand
    governor.limit = 1
    for n in range(4):
        await harness.runtime.enqueue("echo", session_id=f"s{n}", text=f"m{n}")
    await gate.wait_arrival(1)
    await asyncio.sleep(0.3)  # time enough for the claim loop to take more, were it allowed to
    assert gate.arrivals == 1
    assert worker.running == 1
    governor.limit = 4  # the cap rises with time, not only when a turn ends: the worker notices on its own
    await gate.wait_arrival(4, within=5)
    assert worker.running == 4
    gate.open()
    await harness.wait_idle([f"s{n}" for n in range(4)])
    assert [await harness.replies(f"s{n}") for n in range(4)] == [[f"echo: m{n}"] for n in range(4)]


async def test_only_a_worker_serving_ingress_is_governed(make_runtime: MakeRuntime) -> None:
    plain = await make_runtime()
    assert plain.stack.worker is not None and plain.stack.worker.governor is None
    off = await make_runtime(serves_ingress=True, ingress_max_lag_ms=0)
    assert off.stack.worker is not None and off.stack.worker.governor is None
    governed = await make_runtime(serves_ingress=True, concurrency=12, ingress_max_lag_ms=5)
    governor = governed.stack.worker.governor if governed.stack.worker else None
    assert governor is not None
    assert (governor.ceiling, governor.max_lag_s) == (12, 0.005)
