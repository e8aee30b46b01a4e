"""A worker process for the runtime benchmarks: the scripted ``bench`` bot, started when told to.

    python bench/runtime_worker.py --db URL [--concurrency 32]

Prints ``ready`` once connected, starts claiming when a line arrives on stdin, and stops gracefully on
SIGTERM (or when stdin closes).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from botfactory.agents import Agent, Bot, BotRegistry, Engine
from botfactory.config import Settings
from botfactory.runtime import start_runtime
from botfactory.store import Store
from botfactory.testing import ScriptedModel, scripted_inference


def bench_bot() -> BotRegistry:
    """The benchmark bot: one agent, one zero-latency model call per turn."""
    return BotRegistry([Bot(name="bench", agent=Agent(name="bench", instructions="Answer.", model="small"))])


async def run(url: str, concurrency: int) -> None:
    store = await Store.open(url)
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)
    settings = Settings.load(database_url=url, runtime={"concurrency": concurrency})
    stack = await start_runtime(
        settings,
        store=store,
        engine=Engine(scripted_inference({"small": ScriptedModel(["ok"], cycle=True)})),
        bots=bench_bot(),
        run_worker=True,
        listen=True,
        concurrency=concurrency,
    )
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.run_in_executor(None, sys.stdin.read).add_done_callback(lambda _: loop.call_soon_threadsafe(stop.set))
    await stop.wait()
    await stack.aclose(grace_s=5)
    await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--concurrency", type=int, default=32)
    arguments = parser.parse_args()
    asyncio.run(run(arguments.db, arguments.concurrency))
