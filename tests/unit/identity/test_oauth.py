"""OAuth2 client-credentials tokens against a real token endpoint on 127.0.0.1, served by the test.

The endpoint checks client authentication (HTTP Basic or form fields) against its registered clients and counts
its requests, which is how caching, refresh and single-flight are observed. The client secrets live in a real vault
on a SQLite file; the clock is the test's, so expiry moves without sleeping. Every test also checks that no client
secret or issued token appears in any log record.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from botfactory.config import OAuthClientConfig
from botfactory.errors import CredentialError
from botfactory.identity import ClientCredentialsTokens, MasterKey, Vault
from botfactory.store import SecretStore, Store
from botfactory.testing import serve_app

NOW = 1_700_000_000.0
CRM_SECRET = "crm-secret-" + secrets.token_hex(8)
BILLING_SECRET = "billing-secret-" + secrets.token_hex(8)


class TokenEndpoint:
    """An OAuth2 token endpoint: client-credentials grant only, with a request counter and failure switches."""

    def __init__(self) -> None:
        self.url = ""
        # client id -> (secret, auth method it must use)
        self.clients: dict[str, tuple[str, str]] = {
            "crm-app": (CRM_SECRET, "client_secret_basic"),
            "billing-app": (BILLING_SECRET, "client_secret_post"),
        }
        self.hits = 0
        self.issued: list[str] = []
        self.forms: list[dict[str, str]] = []
        self.expires_in: Any = 3600
        self.status: int | None = None
        self.delay_s = 0.0

    def app(self) -> Starlette:
        async def token(request: Request) -> Response:
            self.hits += 1
            await asyncio.sleep(self.delay_s)
            if self.status is not None:
                return JSONResponse({"error": "temporarily_unavailable"}, status_code=self.status)
            form = {key: str(value) for key, value in (await request.form()).items()}
            self.forms.append(form)
            if form.get("grant_type") != "client_credentials":
                return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
            client_id, secret, method = _client_auth(request, form)
            expected = self.clients.get(client_id or "")
            if expected is None or (secret, method) != expected:
                # An oversharing provider repeats what it was sent: our error must not pass it on.
                return JSONResponse(
                    {"error": "invalid_client", "error_description": f"bad secret {secret} for {client_id}"},
                    status_code=401,
                )
            value = f"token-{client_id}-{len(self.issued)}-{secrets.token_hex(8)}"
            self.issued.append(value)
            body: dict[str, Any] = {"access_token": value, "token_type": "Bearer"}
            if self.expires_in is not None:
                body["expires_in"] = self.expires_in
            return JSONResponse(body)

        return Starlette(routes=[Route("/token", token, methods=["POST"])])


def _client_auth(request: Request, form: dict[str, str]) -> tuple[str | None, str | None, str]:
    header = request.headers.get("authorization", "")
    if header.startswith("Basic "):
        client_id, _, secret = base64.b64decode(header.removeprefix("Basic ")).decode().partition(":")
        return unquote_plus(client_id), unquote_plus(secret), "client_secret_basic"
    return form.get("client_id"), form.get("client_secret"), "client_secret_post"


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def endpoint() -> AsyncIterator[TokenEndpoint]:
    served = TokenEndpoint()
    async with serve_app(served.app()) as base_url:
        served.url = f"{base_url}/token"
        yield served


@pytest.fixture
async def vault(tmp_path: Path) -> AsyncIterator[Vault]:
    async with await Store.open(f"sqlite:///{tmp_path / 'botfactory.db'}") as store:
        opened = Vault(SecretStore(store.engine), MasterKey.generate())
        await opened.set("oauth/crm", CRM_SECRET)
        await opened.set("billing_client_secret", BILLING_SECRET)
        yield opened


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(autouse=True)
def no_values_logged(caplog: pytest.LogCaptureFixture, endpoint: TokenEndpoint) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    yield
    records = [*caplog.get_records("setup"), *caplog.get_records("call"), *caplog.records]
    assert any(record.name.startswith("botfactory.identity") for record in records)
    logged = "\n".join(f"{record.getMessage()} {record.args!r} {record.exc_text or ''}" for record in records)
    for value in (CRM_SECRET, BILLING_SECRET, *endpoint.issued):
        assert value not in logged


@pytest.fixture
async def tokens(endpoint: TokenEndpoint, vault: Vault, clock: Clock) -> AsyncIterator[ClientCredentialsTokens]:
    clients = {
        "crm": OAuthClientConfig(
            token_url=endpoint.url, client_id="crm-app", scopes=["contacts.read", "deals.read"], audience="crm-api"
        ),
        "billing": OAuthClientConfig(
            token_url=endpoint.url,
            client_id="billing-app",
            client_secret="billing_client_secret",
            auth_method="client_secret_post",
        ),
    }
    made = ClientCredentialsTokens(clients, vault, clock=clock)
    yield made
    await made.aclose()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_basic_auth_token_is_fetched_once_and_served_from_the_cache(
    tokens: ClientCredentialsTokens, endpoint: TokenEndpoint
) -> None:
    got = [await tokens.token("crm") for _ in range(10)]

    assert endpoint.hits == 1
    assert got == [endpoint.issued[0]] * 10
    assert endpoint.forms == [
        {"grant_type": "client_credentials", "scope": "contacts.read deals.read", "audience": "crm-api"}
    ]


async def test_post_auth_sends_the_client_id_and_the_secret_named_by_client_secret_in_the_form(
    tokens: ClientCredentialsTokens, endpoint: TokenEndpoint
) -> None:
    token = await tokens.token("billing")

    assert token == endpoint.issued[0] and token.startswith("token-billing-app-")
    assert endpoint.forms[0]["client_id"] == "billing-app"


async def test_a_token_is_refreshed_margin_seconds_before_it_expires(
    tokens: ClientCredentialsTokens, endpoint: TokenEndpoint, clock: Clock
) -> None:
    first = await tokens.token("crm")

    clock.now = NOW + 3600 - 30 - 1
    assert await tokens.token("crm") == first
    clock.now = NOW + 3600 - 30
    second = await tokens.token("crm")

    assert endpoint.hits == 2 and second != first and second == endpoint.issued[1]
    clock.now += 100
    assert await tokens.token("crm") == second and endpoint.hits == 2


async def test_without_expires_in_a_token_is_kept_five_minutes(
    tokens: ClientCredentialsTokens, endpoint: TokenEndpoint, clock: Clock
) -> None:
    endpoint.expires_in = None
    first = await tokens.token("crm")

    clock.now = NOW + 299
    assert await tokens.token("crm") == first
    clock.now = NOW + 300
    assert await tokens.token("crm") != first
    assert endpoint.hits == 2


async def test_a_short_lived_token_is_kept_half_its_lifetime_and_expires_in_may_be_a_string(
    tokens: ClientCredentialsTokens, endpoint: TokenEndpoint, clock: Clock
) -> None:
    endpoint.expires_in = "40"
    first = await tokens.token("crm")

    clock.now = NOW + 19
    assert await tokens.token("crm") == first
    clock.now = NOW + 20
    assert await tokens.token("crm") != first


async def test_fifty_concurrent_callers_share_one_fetch(
    tokens: ClientCredentialsTokens, endpoint: TokenEndpoint
) -> None:
    endpoint.delay_s = 0.2

    got = await asyncio.gather(*(tokens.token("crm") for _ in range(50)))

    assert endpoint.hits == 1
    assert set(got) == {endpoint.issued[0]}


async def test_clients_are_cached_apart(tokens: ClientCredentialsTokens, endpoint: TokenEndpoint) -> None:
    crm, billing = await asyncio.gather(tokens.token("crm"), tokens.token("billing"))

    assert crm.startswith("token-crm-app-") and billing.startswith("token-billing-app-")
    assert endpoint.hits == 2


async def test_a_wrong_client_secret_is_a_credential_error_that_never_shows_the_secret_and_is_not_cached(
    tokens: ClientCredentialsTokens, endpoint: TokenEndpoint, vault: Vault
) -> None:
    wrong = "wrong-secret-" + secrets.token_hex(8)
    await vault.set("oauth/crm", wrong)

    with pytest.raises(CredentialError) as caught:
        await tokens.token("crm")

    message = caught.value.message
    assert wrong not in message and CRM_SECRET not in message
    assert "'crm'" in message and "HTTP 401, invalid_client" in message
    assert "botfactory secrets set oauth/crm" in message
    assert not caught.value.retryable

    await vault.set("oauth/crm", CRM_SECRET)
    assert await tokens.token("crm") == endpoint.issued[0]
    assert endpoint.hits == 2


async def test_an_endpoint_that_is_down_is_a_retryable_credential_error(vault: Vault, clock: Clock) -> None:
    url = f"http://127.0.0.1:{_free_port()}/token"
    tokens = ClientCredentialsTokens({"crm": OAuthClientConfig(token_url=url, client_id="crm-app")}, vault, clock=clock)
    try:
        with pytest.raises(CredentialError, match=r"cannot reach the token endpoint of OAuth client 'crm'") as caught:
            await tokens.token("crm")
    finally:
        await tokens.aclose()

    assert caught.value.retryable
    assert url in caught.value.message and "token_url" in caught.value.message


async def test_a_failing_endpoint_fails_every_waiting_caller_once_then_the_next_call_asks_again(
    tokens: ClientCredentialsTokens, endpoint: TokenEndpoint
) -> None:
    endpoint.status, endpoint.delay_s = 503, 0.2

    outcomes = await asyncio.gather(*(tokens.token("crm") for _ in range(20)), return_exceptions=True)

    assert endpoint.hits == 1
    assert all(isinstance(outcome, CredentialError) and outcome.retryable for outcome in outcomes)
    assert "HTTP 503, temporarily_unavailable" in str(outcomes[0])

    endpoint.status, endpoint.delay_s = None, 0.0
    assert await tokens.token("crm") == endpoint.issued[0]
    assert endpoint.hits == 2


async def test_an_unknown_client_lists_the_configured_ones(tokens: ClientCredentialsTokens) -> None:
    with pytest.raises(CredentialError, match=r"no OAuth client 'erp' is configured \(configured: billing, crm\)"):
        await tokens.token("erp")


async def test_a_client_secret_missing_from_the_vault_says_how_to_store_it(
    tokens: ClientCredentialsTokens, endpoint: TokenEndpoint, vault: Vault
) -> None:
    await vault.delete("oauth/crm")

    with pytest.raises(CredentialError, match=r"`botfactory secrets set oauth/crm`"):
        await tokens.token("crm")
    assert endpoint.hits == 0


async def test_an_answer_without_an_access_token_is_a_credential_error(vault: Vault, clock: Clock) -> None:
    async def odd(request: Request) -> Response:
        return JSONResponse({"token_type": "Bearer"})

    async with serve_app(Starlette(routes=[Route("/token", odd, methods=["POST"])])) as base_url:
        config = OAuthClientConfig(token_url=f"{base_url}/token", client_id="crm-app")
        tokens = ClientCredentialsTokens({"crm": config}, vault, clock=clock)
        try:
            with pytest.raises(CredentialError, match="answered without an access_token"):
                await tokens.token("crm")
        finally:
            await tokens.aclose()


async def test_a_caller_that_gives_up_does_not_cancel_the_fetch_others_wait_for(
    tokens: ClientCredentialsTokens, endpoint: TokenEndpoint
) -> None:
    endpoint.delay_s = 0.3
    impatient = asyncio.create_task(tokens.token("crm"))
    patient = asyncio.create_task(tokens.token("crm"))
    await asyncio.sleep(0.1)
    impatient.cancel()

    assert await patient == endpoint.issued[0]
    assert impatient.cancelled() and endpoint.hits == 1
