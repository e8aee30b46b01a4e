"""Acks before turns: a worker sharing its process with the HTTP server runs fewer turns while the loop runs late.

In ``botfactory up`` the worker and the channels share one event loop (and one GIL). Under more traffic than the
process can turn into replies, every coroutine waits its turn, and Slack's acknowledgement of a new message waits
behind the turns of earlier ones. :class:`LoopLagGovernor` samples how late the loop wakes a sleeper and caps the
worker's turns in flight by additive increase, multiplicative decrease (as TCP does): the cap halves on every
sample later than ``max_lag_s`` and grows by one on every sample on time. Messages wait in the inbox (durably)
instead of in the loop; the acks stay fast. ``botfactory serve`` and ``worker`` do not need it: there the kernel,
not the loop, shares the CPU between requests and turns.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Final

__all__ = ["LoopLagGovernor"]

_SAMPLE_S: Final = 0.01


class LoopLagGovernor:
    """The number of turns a worker may run now, lowered while the event loop runs late.

    Args:
        ceiling: The worker's configured concurrency: the cap never exceeds it.
        max_lag_s: A wake-up later than this halves the cap.
        sample_s: How often the loop's lateness is sampled.
        write_latency: How long the store's last batch of writes waited for its commit (an ack waits for its
            message's commit too); counted as lateness.
    """

    def __init__(
        self,
        *,
        ceiling: int,
        max_lag_s: float,
        sample_s: float = _SAMPLE_S,
        write_latency: Callable[[], float] | None = None,
    ) -> None:
        self.ceiling = ceiling
        self.write_latency = write_latency
        self.max_lag_s = max_lag_s
        self.sample_s = sample_s
        self.limit = ceiling
        """Turns the worker may run now (1 to ``ceiling``)."""
        self.lag_s = 0.0
        """The last sample's lateness."""
        self.late_samples = 0
        """Samples later than ``max_lag_s`` so far (for tests and benchmarks)."""
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start sampling in the running loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._sample(), name="loop-lag-governor")

    async def stop(self) -> None:
        """Stop sampling."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def observe(self, lag_s: float) -> None:
        """Adjust the cap for one sample's lateness."""
        self.lag_s = lag_s
        if lag_s > self.max_lag_s:
            self.late_samples += 1
            self.limit = max(1, self.limit // 2)
        elif self.limit < self.ceiling:
            self.limit += 1

    async def _sample(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            await asyncio.sleep(self.sample_s)
            late = max(0.0, loop.time() - asked - self.sample_s)
            self.observe(max(late, self.write_latency()) if self.write_latency is not None else late)
