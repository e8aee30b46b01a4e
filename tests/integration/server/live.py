"""A platform served by uvicorn on its own event loop in a background thread, for synchronous clients.

Synchronous test tools (schemathesis, which sends requests with ``requests``) cannot share the test's event
loop; this runs the whole platform, worker included, on a loop of its own.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import uvicorn

from botfactory.config import Settings
from botfactory.inference import Inference, Model, ModelProfile, ModelRequest, ModelResponse
from botfactory.memory import Embedder
from botfactory.messages import Message, Usage
from botfactory.server import Platform, create_app

__all__ = ["EchoModel", "LiveServer"]


class EchoModel(Model):
    """Answers every request at once with the last user message: turns end in milliseconds."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.profile = ModelProfile()

    async def complete(self, request: ModelRequest) -> ModelResponse:
        last = next((m.content for m in reversed(request.messages) if m.role == "user"), "") or ""
        return ModelResponse(
            message=Message(role="assistant", content=f"echo: {last[:200]}"),
            usage=Usage(input_tokens=len(last) // 4 + 1, output_tokens=3),
            model=self.name,
            latency_s=0.0,
        )


class LiveServer:
    """``with LiveServer(settings, embedder=...) as server:`` serves at ``server.url`` until the block ends.

    Args:
        app_options: Keyword arguments for :func:`~botfactory.server.create_app`.
        setup: Run on the server's loop once the platform has started (add bots, create keys).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        embedder: Embedder,
        inference: Inference | None = None,
        app_options: dict[str, Any] | None = None,
        setup: Callable[[Platform], Any] | None = None,
    ) -> None:
        self.settings = settings
        self._embedder = embedder
        self._inference = inference or Inference({"large": EchoModel("large"), "small": EchoModel("small")})
        self._app_options = app_options or {}
        self._setup = setup
        self._ready: Future[str] = Future()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: uvicorn.Server | None = None
        self._thread = threading.Thread(target=self._main, name="live-server", daemon=True)
        self.platform: Platform | None = None
        self.url = ""

    def __enter__(self) -> LiveServer:
        self._thread.start()
        self.url = self._ready.result(timeout=120)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._server is not None:
            self._loop.call_soon_threadsafe(setattr, self._server, "should_exit", True)
        self._thread.join(timeout=30)

    def run(self, coro: Any) -> Any:
        """Run a coroutine on the server's loop (e.g. a store query) and return its result."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=60)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            if not self._ready.done():
                self._ready.set_exception(exc)
            raise

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        platform = await Platform.start(self.settings, inference=self._inference, embedder=self._embedder)
        self.platform = platform
        try:
            if self._setup is not None:
                result = self._setup(platform)
                if asyncio.iscoroutine(result):
                    await result
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            app = create_app(platform, **self._app_options)
            self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
            serving = asyncio.create_task(self._server.serve())
            while not self._server.started:
                if serving.done():
                    await serving
                await asyncio.sleep(0.02)
            self._ready.set_result(f"http://127.0.0.1:{port}")
            await serving
        finally:
            await platform.aclose()
