"""Support-bot turn latency on the real local models, for the golden cases.

Starts the platform as ``botfactory up`` does (local llama.cpp servers, the shipped docs, the GitHub demo
stand-in), runs every golden case once as a turn, and prints p50/max per route. The baseline, measured in the
same run, is one bare completion on the ``large`` model (a short routing-sized prompt through the same server):
turn latency is also given as a multiple of it, which drifts less than seconds on a shared machine.

    python bench/bench_support_latency.py [--home DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from botfactory.bots import SUPPORT_DOCS_DIR
from botfactory.config import Settings
from botfactory.inference import ModelRequest
from botfactory.messages import Message
from botfactory.server import Platform


async def bare_call_s(platform: Platform, repeats: int = 3) -> float:
    request = ModelRequest(
        messages=(
            Message(role="system", content="Route the user's message: answer 'docs' or 'github'."),
            Message(role="user", content="how do I rotate my vault API keys?"),
        ),
        max_tokens=8,
    )
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        await platform.inference.model("large").complete(request)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


async def main(home: Path) -> None:
    golden = json.loads((SUPPORT_DOCS_DIR.parent / "golden.json").read_text())
    platform = await Platform.start(Settings.load(home=home))
    try:
        baseline = await bare_call_s(platform)
        latencies: dict[str, list[float]] = {}
        for route in ("knowledge", "licenses", "unanswerable"):
            for i, case in enumerate(golden[route]):
                started = time.perf_counter()
                await platform.runtime.invoke("support", session_id=f"bench-{route}-{i}", text=case["question"])
                latencies.setdefault(route, []).append(time.perf_counter() - started)
    finally:
        await platform.aclose()
    every = [t for ts in latencies.values() for t in ts]
    print(f"baseline: one bare 'large' completion = {baseline:.2f} s")
    print(f"{'route':<14} {'turns':>5} {'p50 s':>7} {'max s':>7} {'p50 / baseline':>15}")
    for route, ts in [*latencies.items(), ("all", every)]:
        p50 = statistics.median(ts)
        print(f"{route:<14} {len(ts):>5} {p50:>7.2f} {max(ts):>7.2f} {p50 / baseline:>15.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, help="BOTFACTORY_HOME to use (default: a temporary one)")
    args = parser.parse_args()
    if args.home:
        asyncio.run(main(args.home))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(main(Path(tmp)))
