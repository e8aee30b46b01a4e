"""Helpers of the runtime suite: bots with scripted models, and a harness around one process's runtime."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from botfactory.agents import Agent, Bot
from botfactory.inference import ModelRequest
from botfactory.runtime import RuntimeStack
from botfactory.store import Store
from botfactory.testing import ScriptedModel


def echo(request: ModelRequest) -> str:
    """A model that answers with the last user message it was shown."""
    last = next(m for m in reversed(request.messages) if m.role == "user")
    return f"echo: {last.content}"


def echo_bot(name: str = "echo", **bot_options: Any) -> Bot:
    """A bot whose one agent answers through the ``small`` alias."""
    return Bot(name=name, agent=Agent(name=name, instructions="Repeat the user.", model="small"), **bot_options)


@dataclass
class Harness:
    """One process's runtime on the test database, plus helpers to drive it."""

    url: str
    store: Store
    stack: RuntimeStack
    models: dict[str, ScriptedModel]
    extra: list[RuntimeStack] = field(default_factory=list)

    @property
    def runtime(self):
        return self.stack.runtime

    async def wait_idle(self, session_ids: Sequence[str], *, within: float = 30.0) -> None:
        """Wait until every session has no pending or running work."""
        async with asyncio.timeout(within):
            while True:
                states = [await self.stack.queue.queue_state(s) for s in session_ids]
                if all(s is None or (s.pending == 0 and s.turn_id is None) for s in states):
                    return
                await asyncio.sleep(0.02)

    async def wait_for(self, predicate: Callable[[], Awaitable[bool]], *, within: float = 30.0) -> None:
        """Poll ``predicate`` until it holds."""
        async with asyncio.timeout(within):
            while not await predicate():  # noqa: ASYNC110 - the state is in the database
                await asyncio.sleep(0.02)


MakeRuntime = Callable[..., Awaitable[Harness]]
