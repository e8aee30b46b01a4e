"""Console: server time to render a session page with 100 turns (goal < 200 ms).

Seeds one session on SQLite with ``--turns`` real turns of the support bot on a zero-latency scripted model (each:
the router's model call, the ``knowledge`` sub-agent, its ``search_docs`` tool call and its model call — 4 steps,
about 10 spans and 1 audit row per turn, plus inbox, outbox and events rows), waits until the span store has them,
then times ``GET /console/sessions/<id>`` through the whole app in process (ASGI, local mode: no login), p50 over
``--runs`` requests. Baseline in the same run: ``GET /healthz`` through the same app.

    .venv/bin/python bench/bench_console.py [--turns 100] [--runs 30]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import re
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import numpy as np
import numpy.typing as npt

from botfactory.config import Settings
from botfactory.server import Platform, create_app
from botfactory.store import SpanStore
from botfactory.testing import ScriptedModel, call, final, scripted_inference

SESSION = "bench-console"


class WordsEmbedder:
    """Bag-of-words vectors: the bench measures the console, not retrieval."""

    dimensions = 64

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dimensions] += 1.0
            out[row] /= max(float(np.linalg.norm(out[row])), 1e-9)
        return out


async def seed(platform: Platform, turns: int) -> int:
    """Run ``turns`` turns on one session; returns how many spans the span store holds for it."""
    for n in range(turns):
        result = await platform.runtime.invoke("support", session_id=SESSION, text=f"question {n} about vault keys")
        assert result.status == "completed", result
    spans = SpanStore(platform.store.engine)
    stable, last = 0, -1
    while stable < 5:  # spans are written in batches after the turn: wait until the count settles
        await asyncio.sleep(0.2)
        count = len(await spans.for_session(SESSION))
        stable, last = (stable + 1, count) if count == last else (0, count)
    return last


async def p50_ms(client: httpx.AsyncClient, path: str, runs: int) -> tuple[float, int]:
    """Median wall time of ``runs`` GETs of ``path`` (after 3 warm-ups) and the last body's size."""
    size = 0
    for _ in range(3):
        await client.get(path)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        response = await client.get(path)
        times.append((time.perf_counter() - started) * 1000.0)
        assert response.status_code == 200, (path, response.status_code, response.text[:300])
        size = len(response.content)
    return statistics.median(times), size


async def main(turns: int, runs: int) -> None:
    models = {
        "large": ScriptedModel(
            [call("knowledge"), final("Rotate it.", sources=["docs/vault/rotate-api-keys.md"])],
            name="large",
            cycle=True,
        ),
        "small": ScriptedModel(["ok"], name="small", cycle=True),
    }
    with tempfile.TemporaryDirectory() as home:
        settings = Settings.load(home=Path(home), github_org="example-org")
        platform = await Platform.start(settings, inference=scripted_inference(models), embedder=WordsEmbedder())
        try:
            seed_started = time.perf_counter()
            span_count = await seed(platform, turns)
            seeded_s = time.perf_counter() - seed_started
            app = create_app(platform, auth="local")
            transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
                page_ms, page_bytes = await p50_ms(client, f"/console/sessions/{SESSION}", runs)
                health_ms, _ = await p50_ms(client, "/healthz", runs)
                body = (await client.get(f"/console/sessions/{SESSION}")).text
        finally:
            await platform.aclose()
    source = "spans" if "Waterfall · " in body and " spans · " in body else "steps"
    print(f"seeded {turns} turns ({span_count} spans stored) in {seeded_s:.1f} s; waterfalls drawn from {source}")
    print(f"session page, {turns} turns: p50 {page_ms:.1f} ms ({page_bytes / 1024:.0f} KiB of HTML), {runs} runs")
    print(f"baseline GET /healthz:   p50 {health_ms:.2f} ms")
    print(f"ratio page / healthz: {page_ms / health_ms:.1f}x; goal < 200 ms: {'met' if page_ms < 200 else 'MISSED'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=100)
    parser.add_argument("--runs", type=int, default=30)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.turns, arguments.runs))
