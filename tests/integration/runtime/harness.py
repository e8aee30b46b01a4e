"""Helpers of the runtime suite: bots with scripted models, gates to hold a call mid-flight, and a harness around one
process's runtime."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from botfactory.agents import Agent, Bot
from botfactory.inference import Model, ModelProfile, ModelRequest, ModelResponse
from botfactory.runtime import Runtime, RuntimeStack, SessionView
from botfactory.store import Store, TurnRecord
from botfactory.testing import ScriptedModel


def echo(request: ModelRequest) -> str:
    """A model that answers with the last user message it was shown."""
    last = next(m for m in reversed(request.messages) if m.role == "user")
    return f"echo: {last.content}"


def echo_bot(name: str = "echo", **bot_options: Any) -> Bot:
    """A bot whose one agent answers through the ``small`` alias."""
    return Bot(name=name, agent=Agent(name=name, instructions="Repeat the user.", model="small"), **bot_options)


class Gate:
    """A point where calls wait until the test opens it; counts arrivals and the calls cancelled while waiting."""

    def __init__(self) -> None:
        self.arrived = asyncio.Event()
        self.opened = asyncio.Event()
        self.arrivals = 0
        self.cancelled = 0

    async def passage(self) -> None:
        """Wait here until :meth:`open` (re-raises a cancellation after counting it)."""
        self.arrivals += 1
        self.arrived.set()
        try:
            await self.opened.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise

    def open(self) -> None:
        self.opened.set()

    async def wait_arrival(self, count: int = 1, *, within: float = 10.0) -> None:
        """Wait until ``count`` calls have reached the gate."""
        async with asyncio.timeout(within):
            while self.arrivals < count:
                self.arrived.clear()
                await self.arrived.wait()


class GatedModel(Model):
    """A scripted model whose calls (all, or the numbered ones in ``gated``, 1-based) wait at ``gate`` first."""

    def __init__(
        self, script: Sequence[Any], *, gate: Gate | None = None, gated: set[int] | None = None, cycle: bool = False
    ) -> None:
        self.inner = ScriptedModel(script, cycle=cycle)
        self.name = self.inner.name
        self.profile = ModelProfile()
        self.gate = gate or Gate()
        self.gated = gated
        self.calls = 0

    @property
    def requests(self) -> list[ModelRequest]:
        return self.inner.requests

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.calls += 1
        if self.gated is None or self.calls in self.gated:
            await self.gate.passage()
        return await self.inner.complete(request)


@dataclass
class Harness:
    """One process's runtime on the test database, plus helpers to drive it."""

    url: str
    store: Store
    stack: RuntimeStack
    models: dict[str, Model]
    extra: list[RuntimeStack] = field(default_factory=list)

    @property
    def runtime(self) -> Runtime:
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

    async def view(self, session_id: str) -> SessionView:
        """Everything stored about the session."""
        return await self.runtime.session(session_id)

    async def turns(self, session_id: str) -> list[TurnRecord]:
        """The session's turns, oldest first."""
        return (await self.view(session_id)).turns

    async def wait_turns(self, session_id: str, count: int, *, within: float = 30.0) -> list[TurnRecord]:
        """Wait until the session has ``count`` turns that have ended, and return all its turns."""

        async def ended() -> bool:
            return sum(t.status != "running" for t in await self.turns(session_id)) >= count

        await self.wait_for(ended, within=within)
        return await self.turns(session_id)

    async def replies(self, session_id: str) -> list[str]:
        """The assistant messages of the session (replies that reached the conversation), in order."""
        return [m.text for m in (await self.view(session_id)).messages if m.role == "assistant"]


MakeRuntime = Callable[..., Awaitable[Harness]]
