"""A small HTTP/1.1 load generator on raw asyncio streams (keep-alive, Content-Length responses).

Python HTTP clients cost more CPU per request than the servers measured here; this one writes prebuilt
request bytes and reads responses by ``Content-Length``, so the load process stays light.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Results:
    """What a load run saw: per-request latencies (seconds) and status counts."""

    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    elapsed_s: float = 0.0

    @property
    def rate(self) -> float:
        """Completed requests per second."""
        return len(self.latencies) / self.elapsed_s if self.elapsed_s else 0.0

    def percentile(self, q: float) -> float:
        """The ``q`` quantile (0-1) of the latencies, in milliseconds."""
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")


def post(path: str, body: bytes, headers: dict[str, str]) -> bytes:
    """The bytes of one keep-alive ``POST``."""
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def closed_loop(port: int, make: Callable[[int], bytes], *, connections: int, duration_s: float) -> Results:
    """Each connection sends its next request as soon as the previous answer is in, for ``duration_s``."""
    results = Results()
    counter = iter(range(10**12))
    deadline = time.perf_counter() + duration_s

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                status = await _exchange(reader, writer, make(next(counter)))
                results.latencies.append(time.perf_counter() - sent)
                results.statuses[status] = results.statuses.get(status, 0) + 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(connections)))
    results.elapsed_s = time.perf_counter() - started
    return results


async def open_loop(
    port: int, make: Callable[[int], bytes], *, rate: float, duration_s: float, connections: int = 64
) -> Results:
    """Send at a fixed ``rate`` whatever the answers do; latency counts from each request's scheduled time.

    Counting from the schedule, not from when a connection was free, keeps a slow server from hiding its
    queueing (coordinated omission).
    """
    results = Results()
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    started = time.perf_counter()
    total = int(rate * duration_s)

    async def one(i: int, scheduled: float) -> None:
        reader, writer = await pool.get()
        try:
            status = await _exchange(reader, writer, make(i))
        finally:
            pool.put_nowait((reader, writer))
        results.latencies.append(time.perf_counter() - scheduled)
        results.statuses[status] = results.statuses.get(status, 0) + 1

    tasks = []
    for i in range(total):
        scheduled = started + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, scheduled)))
    await asyncio.gather(*tasks)
    results.elapsed_s = time.perf_counter() - started
    while not pool.empty():
        pool.get_nowait()[1].close()
    return results
