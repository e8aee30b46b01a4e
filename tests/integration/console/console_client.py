"""Helpers of the console tests: an in-process client, logging in, reading a page's CSRF token, waiting."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import httpx

from botfactory.server import AuthMode, Platform, create_app


def client_for(platform: Platform, *, auth: AuthMode = "keys", client: str = "127.0.0.1") -> httpx.AsyncClient:
    """An in-process client of the app (no redirects followed, so tests see them)."""
    transport = httpx.ASGITransport(app=create_app(platform, auth=auth), client=(client, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver", follow_redirects=False)


async def log_in(client: httpx.AsyncClient, secret: str) -> str:
    """Log the client in with an API key; returns the CSRF token its pages carry."""
    response = await client.post("/console/login", data={"credential": secret, "next": "/console/sessions"})
    assert response.status_code == 303, response.text
    page = await client.get("/console/sessions")
    assert page.status_code == 200
    return csrf_of(page.text)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)


async def wait_for(predicate: Callable[[], Any], *, within: float = 10.0) -> Any:
    """Poll an async predicate until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError("the condition did not come true in time")
