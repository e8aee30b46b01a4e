"""API keys on a real server: `serve` (keys) refuses every route without one, `up` (local) lets this machine in.

The route test walks the app's own route table, so a route added later cannot slip through unauthenticated.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from serving import serving
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from botfactory.agents import Agent, Bot
from botfactory.config import Settings
from botfactory.errors import StoreError
from botfactory.identity import ApiKeys, IssuedKey
from botfactory.inference import ModelRequest
from botfactory.memory import OnnxMiniLMEmbedder
from botfactory.server import Platform, create_app
from botfactory.server.auth import AuthMiddleware
from botfactory.store import ApiKeyStore
from botfactory.testing import ScriptedModel, SlackStandIn, run_standin_server, scripted_inference, signed_event

pytestmark = pytest.mark.integration

SLACK_SECRET = "auth-test-signing-secret"
SLACK_TOKEN = "xoxb-auth-test"
TTL_S = 5.0


def echo(request: ModelRequest) -> str:
    last = next(m for m in reversed(request.messages) if m.role == "user")
    return f"echo: {last.content}"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def slack_url() -> Iterator[str]:
    with run_standin_server(SlackStandIn(token=SLACK_TOKEN)) as url:
        yield url


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def platform(
    tmp_path: Path, seeded_database: Path, embedder: OnnxMiniLMEmbedder, slack_url: str, clock: FakeClock
) -> AsyncIterator[Platform]:
    """The support bot and an echo bot, Slack turned on, and API keys checked with a clock the test moves."""
    shutil.copy(seeded_database, tmp_path / "botfactory.db")
    settings = Settings.load(
        home=tmp_path,
        github_org="example-org",
        slack_signing_secret=SecretStr(SLACK_SECRET),
        slack_bot_token=SecretStr(SLACK_TOKEN),
        slack_api_url=f"{slack_url}/api/",
    )
    models = {"small": ScriptedModel([echo], cycle=True, name="small"), "large": ScriptedModel([], name="large")}
    started = await Platform.start(settings, inference=scripted_inference(models), embedder=embedder)
    started.bots.add(Bot(name="echo", agent=Agent(name="echo", instructions="Repeat.", model="small")))
    started.api_keys = ApiKeys(ApiKeyStore(started.store.engine), ttl_s=TTL_S, clock=clock)
    try:
        yield started
    finally:
        await started.aclose()


@pytest.fixture
async def keys_server(platform: Platform) -> AsyncIterator[str]:
    """``botfactory serve``'s app (auth="keys") on a real loopback server."""
    async with serving(platform, auth="keys") as base_url:
        yield base_url


async def new_key(platform: Platform, bot: str | None) -> IssuedKey:
    return await platform.api_keys.create(bot=bot, name="test")


def bearer(issued: IssuedKey) -> dict[str, str]:
    return {"authorization": f"Bearer {issued.secret}"}


def assert_unauthenticated(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    error = response.json()["error"]
    assert error["code"] == "unauthenticated"
    assert "botfactory keys create --bot NAME" in error["message"]


def probes(app: Starlette) -> list[tuple[str, str]]:
    """``(method, path)`` for every route of the app, path parameters filled in."""
    found: list[tuple[str, str]] = []
    for route in app.routes:
        if isinstance(route, Route):
            path = re.sub(r"\{[^}]+\}", "x", route.path)
            found += [(method, path) for method in sorted(route.methods or {"GET"}) if method != "HEAD"]
        elif isinstance(route, Mount):
            found.append(("GET", route.path.rstrip("/") + "/x"))
        else:
            raise AssertionError(f"teach this test how to call a {type(route).__name__} ({route!r})")
    return found


def exempt(method: str, path: str) -> bool:
    public = ("/healthz", "/ping", "/openapi.json", "/a2a/x/.well-known/agent-card.json")  # A2A cards: docs/a2a.md
    console = path == "/" or path == "/console" or path.startswith("/console/")  # its own login: docs/console.md
    return path.startswith("/slack/") or console or (method == "GET" and path in public)


async def test_every_route_but_health_and_slack_needs_a_key(platform: Platform, keys_server: str) -> None:
    routes = probes(create_app(platform, auth="keys"))
    guarded = [(method, path) for method, path in routes if not exempt(method, path)]
    assert ("POST", "/v1/bots/x/invoke") in guarded and ("GET", "/v1/sessions") in guarded
    assert any(path.startswith("/slack/") for _, path in routes), "Slack is configured: its routes must be mounted"

    async with httpx.AsyncClient(base_url=keys_server, trust_env=False) as http:
        for method, path in guarded:
            assert_unauthenticated(await http.request(method, path, json={"text": "hi"}))
        for method, path in [(m, p) for m, p in routes if exempt(m, p)]:
            response = await http.request(method, path, content=b"{}")
            assert "www-authenticate" not in response.headers, (method, path)
            assert response.status_code != 401 or response.json()["error"]["code"] != "unauthenticated"
        # An unknown path is refused too, so the route table cannot be probed without a key.
        assert_unauthenticated(await http.get("/v1/no-such-thing"))


async def test_health_and_signed_slack_requests_need_no_key(keys_server: str) -> None:
    body, headers = signed_event({"type": "url_verification", "challenge": "c-123"}, SLACK_SECRET)
    async with httpx.AsyncClient(base_url=keys_server, trust_env=False) as http:
        health = await http.get("/healthz")
        slack = await http.post("/slack/events", content=body, headers=headers)
        unsigned = await http.post("/slack/events", content=body)

    assert health.status_code == 200 and "support" in health.json()["bots"]
    assert (slack.status_code, slack.text) == (200, "c-123")
    assert unsigned.status_code == 401  # Slack's own signature check, not an API key
    assert "www-authenticate" not in unsigned.headers


async def test_a_valid_key_works_as_bearer_or_x_api_key(platform: Platform, keys_server: str) -> None:
    issued = await new_key(platform, None)
    async with httpx.AsyncClient(base_url=keys_server, trust_env=False) as http:
        listed = await http.get("/v1/bots", headers=bearer(issued))
        other_header = await http.get("/v1/bots", headers={"x-api-key": issued.secret})
        posted = await http.post(
            "/v1/bots/echo/sessions/k-1/messages", json={"text": "with a key"}, headers=bearer(issued)
        )
        invoked = await http.post(
            "/v1/bots/echo/invoke", json={"session_id": "k-2", "text": "ping"}, headers=bearer(issued), timeout=30
        )

    assert listed.status_code == 200 and {b["name"] for b in listed.json()["bots"]} >= {"echo", "support"}
    assert other_header.status_code == 200
    assert posted.status_code == 202
    assert invoked.status_code == 200 and invoked.json()["reply"] == "echo: ping"
    stored = await platform.api_keys.store.get(issued.record.id)
    assert stored.last_used_at is not None


async def test_streaming_passes_through_the_middleware(platform: Platform, keys_server: str) -> None:
    issued = await new_key(platform, "echo")
    headers = {**bearer(issued), "accept": "text/event-stream"}
    async with (
        httpx.AsyncClient(base_url=keys_server, trust_env=False, timeout=30) as http,
        http.stream(
            "POST", "/v1/bots/echo/invoke", json={"session_id": "st-1", "text": "stream"}, headers=headers
        ) as r,
    ):
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        text = "".join([chunk async for chunk in r.aiter_text()])
    assert "echo: stream" in text


@pytest.mark.parametrize(
    "header",
    [
        {"authorization": "Bearer bf_" + "A" * 43},  # well-formed, unknown
        {"authorization": "Bearer not-a-key"},
        {"authorization": "Bearer"},
        {"authorization": "Basic dXNlcjpwYXNz"},
        {"x-api-key": "bf_" + "B" * 43},
    ],
    ids=["unknown", "malformed", "empty", "basic", "unknown-x-api-key"],
)
async def test_a_wrong_key_is_refused(keys_server: str, header: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=keys_server, trust_env=False) as http:
        response = await http.get("/v1/bots", headers=header)
    assert_unauthenticated(response)
    presented = next(iter(header.values())).split(" ")[-1]
    assert len(presented) < 16 or presented not in response.text  # a presented secret is never echoed


async def test_a_revoked_key_is_refused_once_the_cache_ttl_has_passed(
    platform: Platform, keys_server: str, clock: FakeClock
) -> None:
    issued = await new_key(platform, "echo")
    elsewhere = ApiKeys(ApiKeyStore(platform.store.engine))  # e.g. `botfactory keys revoke` on another host
    async with httpx.AsyncClient(base_url=keys_server, trust_env=False) as http:
        assert (await http.get("/v1/bots", headers=bearer(issued))).status_code == 200

        await elsewhere.revoke(issued.record.id)
        clock.now += TTL_S - 0.5
        assert (await http.get("/v1/bots", headers=bearer(issued))).status_code == 200  # within the documented TTL

        clock.now += 0.5
        response = await http.get("/v1/bots", headers=bearer(issued))
    assert_unauthenticated(response)
    assert f"{issued.record.id} was revoked" in response.json()["error"]["message"]


async def test_a_key_scoped_to_one_bot_is_forbidden_on_another(platform: Platform, keys_server: str) -> None:
    issued = await new_key(platform, "echo")
    async with httpx.AsyncClient(base_url=keys_server, trust_env=False) as http:
        own = await http.post("/v1/bots/echo/sessions/s-1/messages", json={"text": "mine"}, headers=bearer(issued))
        other = await http.post(
            "/v1/bots/support/sessions/s-2/messages", json={"text": "not mine"}, headers=bearer(issued)
        )
        encoded = await http.post(
            "/v1/bots/%73upport/invoke", json={"session_id": "s-3", "text": "sneaky"}, headers=bearer(issued)
        )

    assert own.status_code == 202
    for response in (other, encoded):
        assert response.status_code == 403
        error = response.json()["error"]
        assert error["code"] == "forbidden"
        assert f"{issued.record.id} may only use bot 'echo', not 'support'" in error["message"]
    assert [s.id for s in await platform.store.list_sessions()] == ["s-1"]  # nothing stored for refused requests


async def test_a_bot_scoped_key_neither_sees_nor_cancels_another_bots_sessions(
    platform: Platform, keys_server: str
) -> None:
    await platform.runtime.enqueue("echo", session_id="mine", text="hello")
    await platform.runtime.enqueue("support", session_id="theirs", text="hello")
    issued = await new_key(platform, "echo")
    async with httpx.AsyncClient(base_url=keys_server, trust_env=False, headers=bearer(issued)) as http:
        listed = await http.get("/v1/sessions")
        asked_other = await http.get("/v1/sessions", params={"bot": "support"})
        own = await http.get("/v1/sessions/mine")
        hidden = [
            await http.get("/v1/sessions/theirs"),
            await http.get("/v1/sessions/theirs/events", params={"follow": "false"}),
            await http.post("/v1/sessions/theirs/cancel"),
        ]
        missing = await http.get("/v1/sessions/no-such-session")

    assert [s["id"] for s in listed.json()["sessions"]] == ["mine"]
    assert asked_other.status_code == 403
    assert own.status_code == 200
    for response in hidden:  # indistinguishable from a session that does not exist
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == missing.json()["error"]["code"]
    assert (await platform.runtime.session("theirs")).inbox[0].status != "cancelled"


async def test_local_mode_lets_this_machine_in_without_a_key_but_still_checks_keys(platform: Platform) -> None:
    scoped = await new_key(platform, "echo")
    async with (
        serving(platform, auth="local") as base_url,
        httpx.AsyncClient(base_url=base_url, trust_env=False) as http,
    ):
        anonymous = await http.post("/v1/bots/support/sessions/l-1/messages", json={"text": "no key"})
        wrong = await http.get("/v1/bots", headers={"authorization": "Bearer bf_" + "C" * 43})
        other_bot = await http.post(
            "/v1/bots/support/sessions/l-2/messages", json={"text": "x"}, headers=bearer(scoped)
        )
        proxied = await http.get("/v1/bots", headers={"x-forwarded-for": "203.0.113.9"})
        foreign_page = await http.get("/v1/bots", headers={"origin": "http://evil.example"})
        local_page = await http.get("/v1/bots", headers={"origin": "http://localhost:3000"})
        openai_placeholder = await http.get("/v1/bots", headers={"authorization": "Bearer unused"})
        proxied_placeholder = await http.get(
            "/v1/bots", headers={"authorization": "Bearer unused", "x-forwarded-for": "203.0.113.9"}
        )

    assert anonymous.status_code == 202
    # OpenAI clients must send some key: locally, one that is not a botfactory key counts as none.
    assert openai_placeholder.status_code == 200
    assert_unauthenticated(proxied_placeholder)
    assert_unauthenticated(wrong)
    assert other_bot.status_code == 403
    assert_unauthenticated(proxied)  # a reverse proxy on this machine must not open the API to everyone
    assert_unauthenticated(foreign_page)  # nor may a web page from elsewhere drive local bots through the browser
    assert local_page.status_code == 200


async def test_a_store_failure_while_checking_a_key_is_503_not_500(
    platform: Platform, keys_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(key_hash: str) -> None:
        raise StoreError("looking up an API key failed: connection refused", retryable=True)

    monkeypatch.setattr(platform.api_keys.store, "find_by_hash", broken)
    async with httpx.AsyncClient(base_url=keys_server, trust_env=False) as http:
        response = await http.get("/v1/bots", headers={"authorization": "Bearer bf_" + "D" * 43})

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "store_error"


async def test_the_principal_is_on_request_state_for_channels(platform: Platform) -> None:
    async def whoami(request: Request) -> Response:
        principal = request.state.principal
        return JSONResponse(
            {"kind": principal.kind, "key_id": principal.key_id, "allows_support": principal.allows_bot("support")}
        )

    app = AuthMiddleware(Starlette(routes=[Route("/whoami", whoami)]), keys=platform.api_keys, mode="local")
    issued = await new_key(platform, "echo")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
        with_key = await http.get("/whoami", headers=bearer(issued))
        local = await http.get("/whoami")

    assert with_key.json() == {"kind": "api_key", "key_id": issued.record.id, "allows_support": False}
    assert local.json() == {"kind": "local", "key_id": None, "allows_support": True}
