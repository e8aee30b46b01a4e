"""JWT bearer tokens on a real server: an OpenID Connect issuer served by the test, tokens minted with PyJWT.

A JWT caller is its token's user: what it sends is stored as that user's, and it cannot name another user.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from serving import serving
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from botfactory.agents import Agent, Bot, tool
from botfactory.config import OidcSettings, Settings
from botfactory.inference import ModelRequest
from botfactory.memory import OnnxMiniLMEmbedder
from botfactory.server import Platform
from botfactory.testing import ScriptedModel, call, scripted_inference, serve_app

pytestmark = pytest.mark.integration

AUDIENCE = "botfactory-api"
KID = "key-1"


def echo(request: ModelRequest) -> str:
    last = next(m for m in reversed(request.messages) if m.role == "user")
    return f"echo: {last.content}"


class Issuer:
    """The issuer's discovery document and JWKS, counting hits, with an outage switch."""

    def __init__(self) -> None:
        self.url = ""
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.jwks_hits = 0
        self.down = False

    def app(self) -> Starlette:
        async def discovery(request: Request) -> Response:
            return JSONResponse({"issuer": self.url, "jwks_uri": f"{self.url}/jwks"})

        async def jwks(request: Request) -> Response:
            self.jwks_hits += 1
            if self.down:
                return JSONResponse({"error": "down"}, status_code=503)
            jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
            return JSONResponse({"keys": [{**jwk, "kid": KID, "alg": "RS256", "use": "sig"}]})

        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", discovery, methods=["GET"]),
                Route("/jwks", jwks, methods=["GET"]),
            ]
        )

    def token(self, **claims: Any) -> str:
        now = int(time.time())
        payload = {
            "iss": self.url,
            "aud": AUDIENCE,
            "sub": "alice",
            "azp": "web-app",
            "scope": "openid chat",
            "iat": now,
            "exp": now + 300,
            **claims,
        }
        return jwt.encode(payload, self.private, "RS256", {"kid": KID})

    def user_id(self, sub: str = "alice") -> str:
        return f"oidc:{self.url.removeprefix('http://')}:{sub}"


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@pytest.fixture
async def issuer() -> AsyncIterator[Issuer]:
    served = Issuer()
    async with serve_app(served.app()) as base_url:
        served.url = base_url
        yield served


@pytest.fixture
async def jwt_platform(
    tmp_path: Path, seeded_database: Path, embedder: OnnxMiniLMEmbedder, issuer: Issuer
) -> AsyncIterator[Platform]:
    """The support and echo bots; JWTs from the issuer accepted for the echo bot, from client web-app, scope chat."""
    shutil.copy(seeded_database, tmp_path / "botfactory.db")
    oidc = OidcSettings(
        issuer=issuer.url, audience=[AUDIENCE], allowed_clients=["web-app"], required_scopes=["chat"], bot="echo"
    )
    settings = Settings.load(home=tmp_path, github_org="example-org", oidc=oidc)
    models = {"small": ScriptedModel([echo], cycle=True, name="small"), "large": ScriptedModel([], name="large")}
    started = await Platform.start(settings, inference=scripted_inference(models), embedder=embedder)
    started.bots.add(Bot(name="echo", agent=Agent(name="echo", instructions="Repeat.", model="small")))
    try:
        yield started
    finally:
        await started.aclose()


@pytest.fixture
async def http(jwt_platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    """A client of ``botfactory serve``'s app (auth="keys") with [oidc] set."""
    async with (
        serving(jwt_platform, auth="keys") as base_url,
        httpx.AsyncClient(base_url=base_url, trust_env=False, timeout=30) as client,
    ):
        yield client


async def test_a_jwt_caller_posts_and_invokes_as_the_tokens_user(
    jwt_platform: Platform, issuer: Issuer, http: httpx.AsyncClient
) -> None:
    token = issuer.token()

    posted = await http.post("/v1/bots/echo/sessions/j-1/messages", json={"text": "hello"}, headers=bearer(token))
    same_user = await http.post(
        "/v1/bots/echo/sessions/j-1/messages",
        json={"text": "again", "user_id": issuer.user_id()},
        headers=bearer(token),
    )
    invoked = await http.post("/v1/bots/echo/invoke", json={"session_id": "j-2", "text": "ping"}, headers=bearer(token))

    assert posted.status_code == 202, posted.text
    assert same_user.status_code == 202, same_user.text
    assert invoked.status_code == 200 and invoked.json()["reply"] == "echo: ping"
    stored = await jwt_platform.store.list_messages("j-1") + await jwt_platform.store.list_messages("j-2")
    assert {(m.text, m.user_id) for m in stored if m.role == "user"} == {
        ("hello", issuer.user_id()),
        ("again", issuer.user_id()),
        ("ping", issuer.user_id()),
    }
    assert issuer.jwks_hits == 1  # the keys were fetched once for all three requests


async def test_a_jwt_caller_cannot_speak_as_another_user(
    jwt_platform: Platform, issuer: Issuer, http: httpx.AsyncClient
) -> None:
    token = issuer.token()

    posted = await http.post(
        "/v1/bots/echo/sessions/j-3/messages", json={"text": "hi", "user_id": "bob"}, headers=bearer(token)
    )
    invoked = await http.post(
        "/v1/bots/echo/invoke", json={"session_id": "j-3", "text": "hi", "user_id": "bob"}, headers=bearer(token)
    )
    completion = await http.post(
        "/v1/chat/completions",
        json={"model": "echo", "messages": [{"role": "user", "content": "hi"}], "user": "bob"},
        headers=bearer(token),
    )

    for response in (posted, invoked, completion):
        assert response.status_code == 403, response.text
        assert "cannot send messages as another user" in response.text
    assert await jwt_platform.store.list_messages("j-3") == []


async def test_an_openai_client_with_a_jwt_talks_as_the_tokens_user(
    jwt_platform: Platform, issuer: Issuer, http: httpx.AsyncClient
) -> None:
    response = await http.post(
        "/v1/chat/completions",
        json={"model": "echo", "messages": [{"role": "user", "content": "via openai"}]},
        headers={**bearer(issuer.token(sub="carol")), "x-session-id": "j-4"},
    )

    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "echo: via openai"
    stored = [m for m in await jwt_platform.store.list_messages("j-4") if m.role == "user"]
    assert [m.user_id for m in stored] == [issuer.user_id("carol")]


@pytest.mark.parametrize(
    ("claims", "status", "says"),
    [
        ({"exp": int(time.time()) - 120}, 401, "expired"),
        ({"aud": "another-api"}, 401, "not meant for this server"),
        ({"iss": "https://elsewhere.example.com"}, 401, "not issued by"),
        ({"azp": "rogue-app"}, 403, "client 'rogue-app'"),
        ({"scope": "openid"}, 403, "lacks the scope(s) chat"),
    ],
)
async def test_tokens_that_fail_a_check_are_refused(
    issuer: Issuer, http: httpx.AsyncClient, claims: dict[str, Any], status: int, says: str
) -> None:
    response = await http.post(
        "/v1/bots/echo/sessions/j-5/messages", json={"text": "hi"}, headers=bearer(issuer.token(**claims))
    )

    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == ("unauthenticated" if status == 401 else "forbidden")
    assert says in error["message"]
    assert (response.headers.get("www-authenticate") == "Bearer") == (status == 401)


async def test_a_jwt_limited_to_one_bot_cannot_use_another(issuer: Issuer, http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/v1/bots/support/sessions/j-6/messages", json={"text": "hi"}, headers=bearer(issuer.token())
    )

    assert response.status_code == 403
    assert "JWT callers may only use bot 'echo', not 'support'" in response.json()["error"]["message"]


async def test_the_agentcore_contract_binds_the_user_and_the_bot_too(
    jwt_platform: Platform, issuer: Issuer, http: httpx.AsyncClient
) -> None:
    session = "agentcore-jwt-session-0123456789abcdef"
    headers = {**bearer(issuer.token()), "x-amzn-bedrock-agentcore-runtime-session-id": session}
    echo_bot = {**headers, "x-amzn-bedrock-agentcore-runtime-custom-bot": "echo"}

    mine = await http.post("/invocations", json={"prompt": "hi"}, headers=echo_bot)
    other_user = await http.post("/invocations", json={"prompt": "hi", "user_id": "bob"}, headers=echo_bot)
    other_bot = await http.post("/invocations", json={"prompt": "hi"}, headers=headers)  # the default bot, support

    assert mine.status_code == 200 and mine.json()["result"] == "echo: hi"
    assert other_user.status_code == 403 and "as another user" in other_user.text
    assert other_bot.status_code == 403 and "not 'support'" in other_bot.text
    stored = [m for m in await jwt_platform.store.list_messages(session) if m.role == "user"]
    assert [m.user_id for m in stored] == [issuer.user_id()]


async def test_api_keys_keep_working_beside_jwts(jwt_platform: Platform, http: httpx.AsyncClient) -> None:
    issued = await jwt_platform.api_keys.create(bot=None, name="test")

    response = await http.post(
        "/v1/bots/support/sessions/k-1/messages",
        json={"text": "hi", "user_id": "bob"},
        headers=bearer(issued.secret),
    )

    assert response.status_code == 202, response.text
    stored = [m for m in await jwt_platform.store.list_messages("k-1") if m.role == "user"]
    assert [m.user_id for m in stored] == ["bob"]  # an API key may still name its users


async def test_an_unreachable_issuer_answers_401_not_500(issuer: Issuer, http: httpx.AsyncClient) -> None:
    issuer.down = True

    response = await http.post(
        "/v1/bots/echo/sessions/j-7/messages", json={"text": "hi"}, headers=bearer(issuer.token())
    )

    assert response.status_code == 401, response.text
    assert "could not be fetched" in response.json()["error"]["message"]
    assert issuer.jwks_hits == 1


async def test_in_local_mode_a_jwt_still_binds_its_user(jwt_platform: Platform, issuer: Issuer) -> None:
    async with (
        serving(jwt_platform, auth="local") as base_url,
        httpx.AsyncClient(base_url=base_url, trust_env=False, timeout=30) as client,
    ):
        mine = await client.post(
            "/v1/bots/echo/sessions/j-8/messages", json={"text": "hi"}, headers=bearer(issuer.token())
        )
        other = await client.post(
            "/v1/bots/echo/sessions/j-8/messages", json={"text": "hi", "user_id": "bob"}, headers=bearer(issuer.token())
        )

    assert mine.status_code == 202 and other.status_code == 403
    stored = [m for m in await jwt_platform.store.list_messages("j-8") if m.role == "user"]
    assert [m.user_id for m in stored] == [issuer.user_id()]


async def test_without_oidc_settings_a_jwt_is_refused_with_how_to_enable_it(platform: Platform, issuer: Issuer) -> None:
    async with (
        serving(platform, auth="keys") as base_url,
        httpx.AsyncClient(base_url=base_url, trust_env=False) as client,
    ):
        response = await client.post(
            "/v1/bots/support/sessions/n-1/messages", json={"text": "hi"}, headers=bearer(issuer.token())
        )

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "JWT bearer tokens are not enabled on this server; set [oidc]" in response.json()["error"]["message"]
    assert issuer.jwks_hits == 0


async def test_the_tokens_groups_reach_tool_policies_as_principal_groups(
    tmp_path: Path, seeded_database: Path, embedder: OnnxMiniLMEmbedder, issuer: Issuer
) -> None:
    """A JWT's ``groups`` claim becomes ``principal.groups`` for Cedar, through the inbox and the worker."""
    shutil.copy(seeded_database, tmp_path / "botfactory.db")
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "sre.cedar").write_text(
        '@id("sre-only")\nforbid(principal, action, resource == Tool::"restart") '
        'unless { principal.groups.contains("sre") };\n'
    )
    oidc = OidcSettings(issuer=issuer.url, audience=[AUDIENCE], bot="ops")
    settings = Settings.load(home=tmp_path, oidc=oidc, gateway={"policies_dir": policies})
    large = ScriptedModel([call("restart"), "ok", call("restart"), "ok"], name="large")
    models = {"small": ScriptedModel([], name="small"), "large": large}
    platform = await Platform.start(settings, inference=scripted_inference(models), embedder=embedder)

    @tool
    def restart() -> str:
        """Restart the service."""
        return "restarted"

    platform.bots.add(Bot(name="ops", agent=Agent(name="ops", instructions="Ops.", model="large", tools=[restart])))
    try:
        async with (
            serving(platform, auth="keys") as base_url,
            httpx.AsyncClient(base_url=base_url, trust_env=False, timeout=30) as client,
        ):
            outcomes = []
            for session, groups in (("g-1", ["sre", "staff"]), ("g-2", ["staff"])):
                token = issuer.token(groups=groups)
                answer = await client.post(
                    "/v1/bots/ops/invoke", json={"session_id": session, "text": "restart"}, headers=bearer(token)
                )
                assert answer.status_code == 200, answer.text
                outcomes.append([m.content for m in large.requests[-1].messages if m.role == "tool"])
        assert outcomes == [["restarted"], ["error: denied by policy sre:sre-only"]]
    finally:
        await platform.aclose()
