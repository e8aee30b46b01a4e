"""A small agent app written with the real ``bedrock-agentcore`` SDK, for the tests of hosting contract apps.

In-process (:func:`build_app`) it records every call and does what :class:`AppState` says; run as a script
(``python contract_app.py``) it listens on ``$PORT`` and echoes, which is how botfactory starts apps itself.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

from bedrock_agentcore.runtime import BedrockAgentCoreApp, BedrockAgentCoreContext, RequestContext

Mode = Literal["json", "stream", "fail", "hang"]


@dataclass
class AppState:
    """What the app does next, and what it saw. Handlers run on the SDK's own worker thread: use thread-safe parts."""

    mode: Mode = "json"
    busy: bool = False
    fail_times: int = 0
    """Fail this many calls first (then do what ``mode`` says)."""
    calls: list[dict[str, Any]] = field(default_factory=list)
    started: threading.Event = field(default_factory=threading.Event)
    cancelled: threading.Event = field(default_factory=threading.Event)
    disconnected: threading.Event = field(default_factory=threading.Event)
    """Set when the server hears the client close the connection of a call in flight."""
    ticks: int = 0
    pings: int = 0


class DisconnectProbe:
    """ASGI wrapper that notes when the server hears the client go away (what an app sees of a cancelled call)."""

    def __init__(self, app: Any, state: AppState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def watched() -> Any:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.state.disconnected.set()
            return message

        await self.app(scope, watched, send)


def build_app(state: AppState) -> BedrockAgentCoreApp:
    """The app: echoes the prompt as JSON, or streams it word by word, or fails, or streams slowly forever."""
    app = BedrockAgentCoreApp()

    @app.ping
    def ping() -> str:
        state.pings += 1
        return "HealthyBusy" if state.busy else "Healthy"

    @app.entrypoint
    async def handler(payload: dict[str, Any], context: RequestContext) -> Any:
        state.calls.append(
            {
                "payload": payload,
                "session_id": context.session_id,
                "request_id": BedrockAgentCoreContext.get_request_id(),
                "headers": dict(context.request_headers or {}),
            }
        )
        prompt = str(payload.get("prompt", ""))
        if state.mode == "fail" or len(state.calls) <= state.fail_times:
            raise RuntimeError("the app's model is down")
        if state.mode == "json":
            return {"result": {"role": "assistant", "content": [{"text": f"app: {prompt}"}]}}
        if state.mode == "stream":
            return _words(f"app: {prompt}")
        return _forever(state)

    return app


async def _words(text: str) -> AsyncIterator[Any]:
    for index, word in enumerate(text.split(" ")):
        yield {"data": word if index == 0 else f" {word}"}
    yield {"event": "done"}


async def _forever(state: AppState) -> AsyncIterator[Any]:
    state.started.set()
    try:
        yield "working"
        while True:
            await asyncio.sleep(0.05)
            state.ticks += 1
            yield "."
    except (asyncio.CancelledError, GeneratorExit):
        state.cancelled.set()
        raise


if __name__ == "__main__":
    if os.environ.get("CONTRACT_APP_CRASH"):
        print("contract app: cannot load my model (missing weights)", file=sys.stderr, flush=True)
        sys.exit(3)
    standalone = BedrockAgentCoreApp()

    @standalone.entrypoint
    def echo(payload: dict[str, Any], context: RequestContext) -> dict[str, Any]:
        return {"result": f"pid {os.getpid()}: {payload.get('prompt')}", "session": context.session_id}

    standalone.run(port=int(os.environ["PORT"]), host="127.0.0.1")
