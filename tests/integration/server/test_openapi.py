"""The OpenAPI document matches what the server serves, and the committed copy in docs/ matches the document."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from starlette.routing import Route

from botfactory.config import Settings
from botfactory.server import Platform, create_app, full_document
from botfactory.server.platform import slack_app

pytestmark = pytest.mark.integration

COMMITTED = Path(__file__).parents[3] / "docs" / "openapi.json"


def _served(platform: Platform) -> set[tuple[str, str]]:
    app = create_app(platform)
    return {
        (method, route.path)
        for route in app.routes
        if isinstance(route, Route)
        for method in (route.methods or ())
        # the web console's HTML pages are not API operations (docs/console.md)
        if method != "HEAD" and route.path != "/" and not route.path.startswith("/console")
    }


async def _documented(platform: Platform) -> dict[str, object]:
    transport = httpx.ASGITransport(app=create_app(platform))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        response = await http.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, object] = response.json()
    return document


async def test_every_route_the_server_mounts_is_documented_and_nothing_else(platform: Platform) -> None:
    document = await _documented(platform)
    paths = document["paths"]
    assert isinstance(paths, dict)
    documented = {(method.upper(), path) for path, ops in paths.items() for method in ops}
    served = _served(platform)
    assert served - documented == set(), "served but not in /openapi.json"
    assert documented - served == set(), "in /openapi.json but not served"


async def test_public_operations_are_exactly_health_the_document_and_signed_or_contract_routes(
    platform: Platform,
) -> None:
    document = await _documented(platform)
    paths = document["paths"]
    assert isinstance(paths, dict)
    public = {(m.upper(), p) for p, ops in paths.items() for m, op in ops.items() if op.get("security") == []}
    agent_card = ("GET", "/a2a/{bot}/.well-known/agent-card.json")  # public, as A2A discovery expects
    assert public <= {("GET", "/healthz"), ("GET", "/openapi.json"), ("GET", "/ping"), agent_card} | {
        (m, p) for m, p in public if p.startswith("/slack/")
    }


def test_the_committed_document_is_current() -> None:
    current = full_document()
    committed = json.loads(COMMITTED.read_text())
    assert committed == current, "docs/openapi.json is out of date: run `make openapi` and review the diff"


async def test_with_slack_configured_its_signed_routes_are_documented_too(platform: Platform) -> None:
    platform.slack = slack_app(
        Settings.load(home=platform.settings.home, slack_signing_secret="s", slack_bot_token="xoxb-t")
    )
    document = await _documented(platform)
    paths = document["paths"]
    assert isinstance(paths, dict)
    documented = {(method.upper(), path) for path, ops in paths.items() for method in ops}
    assert {("POST", "/slack/events"), ("POST", "/slack/interactions")} <= documented
    assert documented == _served(platform)


async def test_exactly_the_public_operations_answer_without_an_api_key(platform: Platform) -> None:
    """Under ``serve`` (a remote client, no key): 401 exactly where the document asks for a key."""
    document = await _documented(platform)
    paths = document["paths"]
    assert isinstance(paths, dict)
    transport = httpx.ASGITransport(app=create_app(platform, auth="keys"), client=("203.0.113.9", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        for path, ops in paths.items():
            concrete = path.replace("{bot}", "support").replace("{session_id}", "s1")
            for method, op in ops.items():
                response = await http.request(method.upper(), concrete, json={})
                public = op.get("security") == []
                if path.startswith("/slack/"):  # public, but Slack's signature is checked instead: 401 unsigned
                    continue
                assert (response.status_code != 401) == public, f"{method.upper()} {path}: {response.status_code}"
