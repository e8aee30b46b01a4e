"""The loop-lag governor: additive increase, multiplicative decrease of the turns a worker may run."""

from __future__ import annotations

import asyncio
import time

from botfactory.runtime.governor import LoopLagGovernor


def test_a_late_sample_halves_the_cap_and_an_on_time_one_adds_one() -> None:
    governor = LoopLagGovernor(ceiling=32, max_lag_s=0.02)
    governor.observe(0.05)
    assert governor.limit == 16
    governor.observe(0.021)
    assert governor.limit == 8
    governor.observe(0.019)  # on time (at or under the limit)
    assert governor.limit == 9
    assert governor.late_samples == 2


def test_the_cap_stays_between_one_and_the_ceiling() -> None:
    governor = LoopLagGovernor(ceiling=4, max_lag_s=0.01)
    for _ in range(10):
        governor.observe(1.0)
    assert governor.limit == 1
    for _ in range(10):
        governor.observe(0.0)
    assert governor.limit == 4


async def test_a_blocked_loop_lowers_the_cap_and_a_free_one_restores_it() -> None:
    governor = LoopLagGovernor(ceiling=16, max_lag_s=0.02, sample_s=0.005)
    governor.start()
    try:
        for _ in range(40):
            if governor.late_samples >= 4:
                break
            time.sleep(0.06)  # noqa: ASYNC251 - the point: the loop is busy, the sampler wakes 60 ms late
            await asyncio.sleep(0)
        assert governor.late_samples >= 4
        assert governor.limit == 1  # halved four times from 16, never on time in between
        async with asyncio.timeout(5):
            while governor.limit < 16:  # noqa: ASYNC110 - the governor exposes a number, not an event
                await asyncio.sleep(0.01)
    finally:
        await governor.stop()


async def test_the_store_s_write_latency_counts_as_lateness() -> None:
    waited = 0.5
    governor = LoopLagGovernor(ceiling=8, max_lag_s=0.02, sample_s=0.005, write_latency=lambda: waited)
    governor.start()
    try:
        async with asyncio.timeout(5):
            while governor.limit > 1:  # noqa: ASYNC110 - the governor exposes a number, not an event
                await asyncio.sleep(0.01)
        waited = 0.0
        async with asyncio.timeout(5):
            while governor.limit < 8:  # noqa: ASYNC110 - the governor exposes a number, not an event
                await asyncio.sleep(0.01)
    finally:
        await governor.stop()
