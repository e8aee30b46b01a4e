"""A platform served by a real uvicorn server on a free loopback port, for the server tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from botfactory.server import AuthMode, Platform, create_app
from botfactory.testing import serve_app


@contextlib.asynccontextmanager
async def serving(platform: Platform, *, auth: AuthMode = "local") -> AsyncIterator[str]:
    """Serve the platform on a free loopback port; yields the base URL. ``auth="keys"`` serves as `botfactory serve`."""
    async with serve_app(create_app(platform, auth=auth)) as base_url:
        yield base_url
