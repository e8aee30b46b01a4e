"""Engine overhead: turns/s of the in-process engine with a zero-latency scripted model.

Each turn: orchestrator -> one specialist (agent as tool) -> one tool -> specialist answer -> orchestrator answer
(4 model calls, 2 tool calls). The baseline, measured in the same run, makes the same scripted model calls and
the same tool call by hand, with no engine: the ratio is the share of raw speed the engine keeps. A third figure
runs the same turns one after another through the durable runtime on a SQLite file (``Runtime.invoke``: enqueue,
a worker claims it, six steps recorded, reply in the outbox), i.e. the latency-bound rate of one caller.

    python bench/bench_engine.py [--turns N]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from botfactory.agents import Agent, Bot, BotRegistry, Engine, TurnInput, tool
from botfactory.config import Settings
from botfactory.inference import ModelRequest
from botfactory.messages import Message
from botfactory.runtime import start_runtime
from botfactory.store import Store
from botfactory.testing import ScriptedModel, call, scripted_inference


@tool
def lookup(key: str) -> str:
    """Look a key up.

    Args:
        key: The key.
    """
    return f"value of {key}"


def build() -> tuple[Agent, ScriptedModel, ScriptedModel]:
    specialist = Agent(name="specialist", description="Knows values.", instructions="s", model="small", tools=[lookup])
    orchestrator = Agent(name="orchestrator", instructions="o", tools=[specialist])
    large = ScriptedModel([call("specialist", request="find x"), "x is 1"], cycle=True)
    small = ScriptedModel([call("lookup", key="x"), "value of x"], cycle=True)
    return orchestrator, large, small


async def engine_turns(turns: int) -> float:
    orchestrator, large, small = build()
    engine = Engine(scripted_inference({"large": large, "small": small}))
    started = time.perf_counter()
    for i in range(turns):
        await engine.run_turn(orchestrator, TurnInput(session_id="s", turn_id=str(i), text="what is x?"))
    return turns / (time.perf_counter() - started)


async def baseline_turns(turns: int) -> float:
    _, large, small = build()
    question = (Message(role="user", content="what is x?"),)
    started = time.perf_counter()
    for _ in range(turns):
        await large.complete(ModelRequest(messages=question))
        await small.complete(ModelRequest(messages=question))
        lookup.func(key="x")
        await small.complete(ModelRequest(messages=question))
        await large.complete(ModelRequest(messages=question))
    return turns / (time.perf_counter() - started)


async def runtime_turns(turns: int) -> float:
    """One turn at a time through the durable runtime (enqueue, worker, reply), waiting for each reply."""
    orchestrator, large, small = build()
    with tempfile.TemporaryDirectory() as home:
        settings = Settings.load(home=Path(home))
        async with await Store.open(settings.resolved_database_url) as store:
            stack = await start_runtime(
                settings,
                store=store,
                engine=Engine(scripted_inference({"large": large, "small": small})),
                bots=BotRegistry([Bot(name="bench", agent=orchestrator)]),
                run_worker=True,
                listen=False,
            )
            try:
                started = time.perf_counter()
                for i in range(turns):
                    await stack.runtime.invoke("bench", session_id=f"s{i % 50}", text="what is x?")
                return turns / (time.perf_counter() - started)
            finally:
                await stack.aclose(grace_s=0)


async def main(turns: int) -> None:
    await engine_turns(200)  # warm up imports and caches
    baseline = await baseline_turns(turns)
    engine = await engine_turns(turns)
    runtime = await runtime_turns(max(turns // 10, 100))
    print(f"turns: {turns} (4 model calls + 2 tool calls each, scripted zero-latency model)")
    print(f"{'path':<34} {'turns/s':>10} {'vs baseline':>12}")
    print(f"{'baseline (same calls, no engine)':<34} {baseline:>10.0f} {1.0:>12.3f}")
    print(f"{'engine (in-process)':<34} {engine:>10.0f} {engine / baseline:>12.3f}")
    print(f"{'Runtime.invoke on SQLite, serial':<34} {runtime:>10.0f} {runtime / baseline:>12.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=3000)
    asyncio.run(main(parser.parse_args().turns))
