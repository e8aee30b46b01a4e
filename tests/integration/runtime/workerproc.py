"""A worker process for the multi-process and chaos tests: ``python workerproc.py --db URL [options]``.

It runs what ``botfactory worker`` runs (a store, the runtime stack with a worker) with two scripted bots:

- ``echo`` answers each message with ``echo: <the message>``;
- ``seats`` calls its ``assign_seat`` tool on the GitHub stand-in for the login named by the message's last word,
  passing the step's idempotency key, then answers like ``echo``. The tool sleeps a little before and after the
  request (``--tool-jitter-s``) so that kills land mid-tool.

The scripted model decides from the request alone (is the last message the user's, or a tool result?), never from
how many calls it has answered, because a turn resumed after a crash replays its recorded steps without asking it.

The process creates ``--ready-file`` once it is claiming work, stops gracefully on SIGTERM (exit status 0), and
exits on its own when the process that started it goes away.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from botfactory.agents import Agent, Bot, BotRegistry, Engine, ToolContext, tool
from botfactory.bots.support.github import GitHubCopilotClient
from botfactory.config import Settings
from botfactory.errors import ToolError
from botfactory.inference import ModelRequest
from botfactory.messages import ToolCall
from botfactory.runtime import start_runtime
from botfactory.store import Store
from botfactory.testing import ScriptedModel, call, scripted_inference

GITHUB_ORG: Final = "example-org"
GITHUB_TOKEN: Final = "demo-token"
SEAT_TOOL: Final = "assign_seat"


def echo(request: ModelRequest) -> str:
    """The answer to a turn: the last user message, repeated."""
    last = next(m for m in reversed(request.messages) if m.role == "user")
    return f"echo: {last.content}"


def login_of(text: str) -> str:
    """The GitHub login a ``seats`` message asks a seat for: its last word."""
    return text.split()[-1]


def respond(request: ModelRequest) -> str | ToolCall:
    """The scripted model of both bots: a seat request first when the agent has the tool, then the echo."""
    last = request.messages[-1]
    if last.role == "user" and any(spec.name == SEAT_TOOL for spec in request.tools):
        return call(SEAT_TOOL, login=login_of(last.content))
    return echo(request)


def seats_bot(client: GitHubCopilotClient | None, *, jitter_s: float = 0.0) -> Bot:
    """The ``seats`` bot: one Copilot seat per message, through ``client`` (``None``: the tool fails)."""

    @tool
    async def assign_seat(login: str, context: ToolContext) -> str:
        """Give a GitHub user a Copilot seat in the organization.

        Args:
            login: The user's GitHub login.
        """
        if client is None:
            raise ToolError("this process has no GitHub stand-in; start it with --github URL")
        await asyncio.sleep(random.uniform(0, jitter_s))
        created = await client.assign_seats([login], idempotency_key=context.idempotency_key)
        await asyncio.sleep(random.uniform(0, jitter_s))
        return f"seat for {login}: {created} created"

    agent = Agent(
        name="seats", instructions="Assign the seat, then repeat the user.", model="small", tools=[assign_seat]
    )
    return Bot(name="seats", agent=agent)


def worker_bots(client: GitHubCopilotClient | None = None, *, jitter_s: float = 0.0) -> BotRegistry:
    """The bots every process of these tests loads (enqueueing needs them as much as running turns)."""
    echo_agent = Agent(name="echo", instructions="Repeat the user.", model="small")
    return BotRegistry([Bot(name="echo", agent=echo_agent), seats_bot(client, jitter_s=jitter_s)])


def settings_for(url: str, **runtime: float) -> Settings:
    """Settings of a test process on ``url``: fast polling and retries, ``runtime`` overrides on top."""
    return Settings.load(
        database_url=url,
        runtime={"poll_s": 0.2, "heartbeat_s": 0.2, "backoff_base_s": 0.05, "backoff_max_s": 0.2, **runtime},
    )


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, help="database URL")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--github", default=None, help="base URL of the GitHub stand-in")
    parser.add_argument("--lease-s", type=float, default=30.0)
    parser.add_argument("--heartbeat-s", type=float, default=0.2)
    parser.add_argument("--max-attempts", type=int, default=5)
    parser.add_argument("--grace-s", type=float, default=5.0, help="SIGTERM: how long running turns may finish")
    parser.add_argument("--tool-jitter-s", type=float, default=0.0, help="random sleep before and after the request")
    parser.add_argument("--ready-file", type=Path, default=None, help="created once the worker claims work")
    return parser.parse_args(argv)


async def _orphaned(parent: int) -> None:
    """Return once the process that started this one has gone (a killed test run must not leave workers)."""
    while os.getppid() == parent:  # noqa: ASYNC110 - nothing signals a parent's exit
        await asyncio.sleep(0.5)


async def serve(args: argparse.Namespace) -> None:
    """Run a worker until SIGTERM or SIGINT, then stop it gracefully."""
    parent = os.getppid()
    settings = settings_for(
        args.db,
        lease_s=args.lease_s,
        heartbeat_s=args.heartbeat_s,
        max_attempts=args.max_attempts,
        shutdown_grace_s=args.grace_s,
    )
    client = None
    if args.github:
        client = GitHubCopilotClient(
            args.github, GITHUB_ORG, GITHUB_TOKEN, timeout_s=10.0, max_retries=8, backoff_s=0.05
        )
    store = await Store.open(args.db)
    stack = await start_runtime(
        settings,
        store=store,
        engine=Engine(scripted_inference({"small": ScriptedModel([respond], cycle=True)})),
        bots=worker_bots(client, jitter_s=args.tool_jitter_s),
        run_worker=True,
        listen=True,
        concurrency=args.concurrency,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if _STOP_REQUESTED:  # a signal arrived while starting: stop as soon as started
        stop.set()
    if args.ready_file is not None:
        args.ready_file.touch()
    watch = loop.create_task(_orphaned(parent))
    waiting = loop.create_task(stop.wait())
    await asyncio.wait([watch, waiting], return_when=asyncio.FIRST_COMPLETED)
    watch.cancel()
    waiting.cancel()
    await stack.aclose(grace_s=args.grace_s)
    await store.close()
    if client is not None:
        await client.aclose()


_STOP_REQUESTED: list[int] = []


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    # Until the event loop takes over the signals, remember a SIGTERM/SIGINT instead of dying of it: a worker
    # told to stop while it starts must still stop gracefully.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda number, frame: _STOP_REQUESTED.append(number))
    args = _parse(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.WARNING, format=f"%(asctime)s pid={os.getpid()} %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
