"""Serve an ASGI app on a real uvicorn server on this event loop (the app shares the loop with the test)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

__all__ = ["serve_app"]


@contextlib.asynccontextmanager
async def serve_app(app: Any, *, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """Serve ``app`` on a free port of ``host`` until the block ends; yields the base URL.

    Unlike :func:`run_standin_server` (a thread of its own), the app runs on the calling loop, so it may use
    services started on it (a platform, a runtime).

    Example:
        >>> async with serve_app(create_app(platform)) as base_url:  # doctest: +SKIP
        ...     response = await httpx.AsyncClient().get(f"{base_url}/healthz")
    """
    with socket.socket() as probe:
        probe.bind((host, 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                await task  # it failed to start: raise its error
                raise RuntimeError(f"the server did not start on {host}:{port}")
            await asyncio.sleep(0.02)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)
