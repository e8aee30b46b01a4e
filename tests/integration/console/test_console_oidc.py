"""Console login with an OpenID Connect token: an issuer served by the test on 127.0.0.1, tokens minted with PyJWT.

A good token earns the login cookie and the console shows the token's user; a bad one is refused on the login
page. The ``[oidc] bot`` limit applies to what the console shows, and the token's groups reach tool policies when
the user chats from the console.
"""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from console_client import client_for, csrf_of, wait_for
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from botfactory.agents import Agent, Bot, tool
from botfactory.config import OidcSettings
from botfactory.console import COOKIE
from botfactory.server import Platform
from botfactory.testing import ScriptedModel, call, serve_app

pytestmark = pytest.mark.integration

AUDIENCE = "botfactory-console"
KID = "console-key-1"


class Issuer:
    """An OpenID Connect issuer: its discovery document and JWKS, and tokens signed with its key."""

    def __init__(self) -> None:
        self.url = ""
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def app(self) -> Starlette:
        async def discovery(request: Request) -> Response:
            return JSONResponse({"issuer": self.url, "jwks_uri": f"{self.url}/jwks"})

        async def jwks(request: Request) -> Response:
            jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
            return JSONResponse({"keys": [{**jwk, "kid": KID, "alg": "RS256", "use": "sig"}]})

        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", discovery, methods=["GET"]),
                Route("/jwks", jwks, methods=["GET"]),
            ]
        )

    def token(self, *, key: rsa.RSAPrivateKey | None = None, **claims: Any) -> str:
        now = int(time.time())
        payload = {"iss": self.url, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 300, **claims}
        return jwt.encode(payload, key or self.private, "RS256", {"kid": KID})

    def user_id(self, sub: str = "alice") -> str:
        return f"oidc:{self.url.removeprefix('http://')}:{sub}"


@pytest.fixture
async def issuer() -> AsyncIterator[Issuer]:
    served = Issuer()
    async with serve_app(served.app()) as base_url:
        served.url = base_url
        yield served


@pytest.fixture
async def oidc_platform(start: Callable[..., Any], issuer: Issuer) -> AsyncIterator[Platform]:
    """The console's platform with tokens from ``issuer`` accepted for the support bot only."""
    oidc = OidcSettings(issuer=issuer.url, audience=[AUDIENCE], bot="support")
    started: Platform = await start(oidc=oidc, runtime={"max_attempts": 1, "backoff_base_s": 0.0}, auth_cache_s=0.0)
    try:
        yield started
    finally:
        await started.aclose()


async def _log_in(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/console/login", data={"credential": token, "next": "/console/sessions"})


async def test_a_valid_token_logs_in_as_the_tokens_user(oidc_platform: Platform, issuer: Issuer) -> None:
    async with client_for(oidc_platform) as client:
        form = await client.get("/console/login")
        assert "OpenID Connect token" in form.text  # the form says tokens are welcome

        token = issuer.token()
        response = await _log_in(client, token)

        assert (response.status_code, response.headers["location"]) == (303, "/console/sessions")
        cookie = response.headers["set-cookie"].lower()
        assert cookie.startswith(f"{COOKIE}=") and "httponly" in cookie and "samesite=strict" in cookie
        assert token.split(".")[2] not in response.headers["set-cookie"]  # the token itself is never stored
        page = await client.get("/console/sessions")
        assert page.status_code == 200
        assert issuer.user_id() in page.text  # who is signed in
        assert "bot support" in page.text  # and the one bot they may use


async def test_a_token_login_ends_when_the_token_expires_not_after_login_hours(
    oidc_platform: Platform, issuer: Issuer
) -> None:
    async with client_for(oidc_platform) as client:
        response = await _log_in(client, issuer.token(exp=int(time.time()) + 300))

    cookie = response.headers["set-cookie"].lower()
    max_age = int(cookie.split("max-age=")[1].split(";")[0])
    assert 200 < max_age <= 300  # the token's five minutes, not [console] login_hours


@pytest.mark.parametrize(
    ("claims", "says"),
    [
        ({"exp": int(time.time()) - 120}, "the token has expired"),
        ({"aud": "another-app"}, "not meant for this server"),
    ],
)
async def test_an_expired_or_foreign_token_is_refused_on_the_login_page(
    oidc_platform: Platform, issuer: Issuer, claims: dict[str, Any], says: str
) -> None:
    async with client_for(oidc_platform) as client:
        response = await _log_in(client, issuer.token(**claims))

        assert response.status_code == 403
        assert says in response.text
        assert COOKIE not in response.cookies
        assert (await client.get("/console/sessions")).status_code == 303  # still not logged in


async def test_a_token_signed_with_another_key_is_refused(oidc_platform: Platform, issuer: Issuer) -> None:
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    async with client_for(oidc_platform) as client:
        response = await _log_in(client, issuer.token(key=forger))

        assert response.status_code == 403
        assert "signature does not verify" in response.text
        assert COOKIE not in response.cookies
        assert (await client.get("/console/sessions")).status_code == 303


async def test_without_oidc_settings_a_token_is_refused_with_what_to_do(platform: Platform, issuer: Issuer) -> None:
    async with client_for(platform) as client:
        response = await _log_in(client, issuer.token())

        assert response.status_code == 403
        assert "OpenID Connect tokens are not enabled on this server; log in with an API key" in response.text
        assert COOKIE not in response.cookies


async def test_the_oidc_bot_limit_applies_to_the_console(oidc_platform: Platform, issuer: Issuer) -> None:
    await oidc_platform.runtime.enqueue("ops", session_id="ops-hidden", text="restart db")
    await oidc_platform.runtime.enqueue("support", session_id="support-shown", text="hi")
    async with client_for(oidc_platform) as client:
        assert (await _log_in(client, issuer.token())).status_code == 303

        listing = await client.get("/console/sessions")
        assert "support-shown" in listing.text and "ops-hidden" not in listing.text
        assert (await client.get("/console/sessions/ops-hidden")).status_code == 404
        other = await client.get("/console/sessions?bot=ops")
        assert other.status_code == 403 and "JWT callers may only use bot" in other.text
        assert (await client.get("/console/chat/ops")).status_code == 403
        bots = await client.get("/console/bots")
        assert 'id="bot-support"' in bots.text and 'id="bot-ops"' not in bots.text
        csrf = csrf_of(bots.text)
        switched = await client.post("/console/bots/kill-switch", data={"csrf": csrf, "kind": "bot", "name": "support"})
        assert switched.status_code == 403 and "kill switches are for operators" in switched.text
    assert await oidc_platform.runtime.kill_switches() == {}


@tool
def restart() -> str:
    """Restart the service."""
    return "restarted"


async def test_the_tokens_groups_reach_tool_policies_from_the_console_chat(
    start: Callable[..., Any], issuer: Issuer, scripted: dict[str, ScriptedModel], tmp_path: Path
) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "sre.cedar").write_text(
        '@id("sre-only")\nforbid(principal, action, resource == Tool::"restart") '
        'unless { principal.groups.contains("sre") };\n'
    )
    oidc = OidcSettings(issuer=issuer.url, audience=[AUDIENCE])
    platform: Platform = await start(oidc=oidc, gateway={"policies_dir": policies}, auth_cache_s=0.0)
    platform.bots.add(Bot(name="sre", agent=Agent(name="sre", instructions="Ops.", model="large", tools=[restart])))
    scripted["large"].script = [call("restart"), "ok", call("restart"), "ok"]
    try:
        outcomes: list[list[str]] = []
        for session, groups in (("c-sre", ["sre", "staff"]), ("c-staff", ["staff"])):
            async with client_for(platform) as client:
                assert (await _log_in(client, issuer.token(groups=groups))).status_code == 303
                csrf = csrf_of((await client.get("/console/chat/sre")).text)
                sent = await client.post(
                    "/console/chat/sre",
                    data={"csrf": csrf, "session_id": session, "text": "restart it"},
                    headers={"accept": "application/json"},
                )
                assert sent.status_code == 202, sent.text
                await wait_for(functools.partial(_turn_ended, platform, session))
            outcomes.append([m.content for m in scripted["large"].requests[-1].messages if m.role == "tool"])
            stored = [m for m in await platform.store.list_messages(session) if m.role == "user"]
            assert [m.user_id for m in stored] == [issuer.user_id()]  # the message is the token's user's
        assert outcomes == [["restarted"], ["error: denied by policy sre:sre-only"]]
    finally:
        await platform.aclose()


async def _turn_ended(platform: Platform, session_id: str) -> bool:
    view = await platform.runtime.session(session_id)
    return any(turn.status != "running" for turn in view.turns)
