"""JWT bearer tokens against a real issuer on 127.0.0.1: its discovery document and JWKS served by the test.

Tokens are minted with PyJWT from RSA and EC keys made with ``cryptography``; the verifier's clock is the test's, so
expiry, leeway and the key cache move without sleeping. The issuer counts its hits, which is how caching, key
rotation and the limit on refetches for unknown key ids are observed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import socket
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from botfactory.config import OidcSettings
from botfactory.errors import ForbiddenError, UnauthenticatedError
from botfactory.identity import OidcVerifier, Principal, oidc_user_id
from botfactory.testing import serve_app

NOW = 1_700_000_000.0
AUDIENCE = "botfactory-api"


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    private: Any

    def jwk(self) -> dict[str, Any]:
        public = self.private.public_key()
        algorithm = jwt.algorithms.RSAAlgorithm if self.alg.startswith("RS") else jwt.algorithms.ECAlgorithm
        jwk: dict[str, Any] = algorithm.to_jwk(public, as_dict=True)
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig"}

    def public_pem(self) -> bytes:
        return bytes(
            self.private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )


@pytest.fixture(scope="module")
def rsa_key() -> SigningKey:
    return SigningKey("rsa-1", "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture(scope="module")
def rsa_key_2() -> SigningKey:
    return SigningKey("rsa-2", "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture(scope="module")
def ec_key() -> SigningKey:
    return SigningKey("ec-1", "ES256", ec.generate_private_key(ec.SECP256R1()))


class Issuer:
    """An OpenID Connect issuer's public side: discovery and JWKS, with a hit counter and an outage switch."""

    def __init__(self) -> None:
        self.url = ""
        self.keys: list[SigningKey] = []
        self.hits: Counter[str] = Counter()
        self.down = False
        self.delay_s = 0.0

    def app(self) -> Starlette:
        async def discovery(request: Request) -> Response:
            self.hits["discovery"] += 1
            return JSONResponse({"issuer": self.url, "jwks_uri": f"{self.url}/keys"})

        async def keys(request: Request) -> Response:
            self.hits["jwks"] += 1
            await asyncio.sleep(self.delay_s)
            if self.down:
                return JSONResponse({"error": "unavailable"}, status_code=503)
            return JSONResponse({"keys": [key.jwk() for key in self.keys]})

        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", discovery, methods=["GET"]),
                Route("/keys", keys, methods=["GET"]),
            ]
        )

    def token(self, key: SigningKey, **claims: Any) -> str:
        payload = {
            "iss": self.url,
            "aud": AUDIENCE,
            "sub": "alice",
            "iat": int(NOW),
            "exp": int(NOW) + 300,
            **claims,
        }
        return jwt.encode({k: v for k, v in payload.items() if v is not None}, key.private, key.alg, {"kid": key.kid})


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def issuer(rsa_key: SigningKey, ec_key: SigningKey) -> AsyncIterator[Issuer]:
    served = Issuer()
    served.keys = [rsa_key, ec_key]
    async with serve_app(served.app()) as base_url:
        served.url = base_url
        yield served


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def make_verifier(issuer: Issuer, clock: Clock) -> AsyncIterator[Any]:
    made: list[OidcVerifier] = []

    def make(**overrides: Any) -> OidcVerifier:
        fields: dict[str, Any] = {"issuer": issuer.url, "audience": [AUDIENCE], "jwks_url": f"{issuer.url}/keys"}
        settings = OidcSettings(**{**fields, **overrides})
        verifier = OidcVerifier(settings, clock=clock)
        made.append(verifier)
        return verifier

    yield make
    for verifier in made:
        await verifier.aclose()


@pytest.fixture
def verifier(make_verifier: Any) -> OidcVerifier:
    verifier: OidcVerifier = make_verifier()
    return verifier


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segments(header: dict[str, Any], payload: dict[str, Any]) -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"


async def refused(verifier: OidcVerifier, token: str, error: type[Exception] = UnauthenticatedError) -> str:
    """The message of the error ``verify`` raises; it never repeats the token."""
    with pytest.raises(error) as caught:
        await verifier.verify(token)
    message = str(caught.value)
    assert not [part for part in (token, *token.split(".")) if len(part) > 16 and part in message]
    return message


async def test_a_valid_token_becomes_a_principal_with_the_users_id_groups_and_scopes(
    make_verifier: Any, issuer: Issuer, rsa_key: SigningKey
) -> None:
    verifier = make_verifier(bot="support")
    token = issuer.token(rsa_key, groups=["admins", "support"], scope="chat read", azp="web-app")

    principal = await verifier.verify(token)

    host = issuer.url.removeprefix("http://")
    assert principal == Principal(
        kind="jwt",
        bot="support",
        user_id=f"oidc:{host}:alice",
        groups=frozenset({"admins", "support"}),
        scopes=frozenset({"chat", "read"}),
        client_id="web-app",
    )
    assert principal.allows_bot("support") and not principal.allows_bot("billing")
    assert principal.key_id is None


def test_the_user_id_names_the_issuers_host_and_path_so_two_realms_never_share_a_user() -> None:
    assert oidc_user_id("https://idp.example.com/realms/acme/", "42") == "oidc:idp.example.com/realms/acme:42"
    assert oidc_user_id("https://idp.example.com/realms/other", "42") == "oidc:idp.example.com/realms/other:42"


async def test_ec_tokens_verify_and_the_keys_are_found_through_discovery(
    make_verifier: Any, issuer: Issuer, ec_key: SigningKey
) -> None:
    verifier = make_verifier(jwks_url=None, user_claim="email", groups_claim="roles")
    token = issuer.token(ec_key, email="alice@example.com", roles="admin", scp=["chat"], client_id="cli")

    principal = await verifier.verify(token)

    assert principal.user_id is not None and principal.user_id.endswith(":alice@example.com")
    assert (principal.groups, principal.scopes, principal.client_id) == ({"admin"}, {"chat"}, "cli")
    assert issuer.hits == {"discovery": 1, "jwks": 1}


async def test_an_expired_token_is_refused_but_the_leeway_absorbs_clock_skew(
    verifier: OidcVerifier, issuer: Issuer, rsa_key: SigningKey, clock: Clock
) -> None:
    token = issuer.token(rsa_key, exp=int(NOW) - 10)
    assert (await verifier.verify(token)).user_id is not None  # 10 s late, within the 30 s leeway

    clock.now = NOW + 21  # 31 s after exp
    assert "expired" in await refused(verifier, token)


async def test_a_token_not_valid_yet_is_refused(verifier: OidcVerifier, issuer: Issuer, rsa_key: SigningKey) -> None:
    assert "not valid yet (nbf" in await refused(verifier, issuer.token(rsa_key, nbf=int(NOW) + 120))
    assert "not valid yet (iat" in await refused(verifier, issuer.token(rsa_key, iat=int(NOW) + 120))
    assert (await verifier.verify(issuer.token(rsa_key, nbf=int(NOW) + 20))).kind == "jwt"


async def test_a_token_without_expiry_or_user_is_refused(
    verifier: OidcVerifier, issuer: Issuer, rsa_key: SigningKey
) -> None:
    assert "no 'exp' claim" in await refused(verifier, issuer.token(rsa_key, exp=None))
    assert "no 'sub' claim" in await refused(verifier, issuer.token(rsa_key, sub=None))
    assert "too long" in await refused(verifier, issuer.token(rsa_key, sub="x" * 300))


async def test_a_token_of_another_issuer_is_refused(
    verifier: OidcVerifier, issuer: Issuer, rsa_key: SigningKey
) -> None:
    message = await refused(verifier, issuer.token(rsa_key, iss="https://evil.example.com"))
    assert f"not issued by {issuer.url}" in message


async def test_a_token_for_another_audience_is_refused(
    verifier: OidcVerifier, issuer: Issuer, rsa_key: SigningKey
) -> None:
    assert "not meant for this server" in await refused(verifier, issuer.token(rsa_key, aud="another-api"))
    assert "not meant for this server" in await refused(verifier, issuer.token(rsa_key, aud=None))
    assert (await verifier.verify(issuer.token(rsa_key, aud=["another-api", AUDIENCE]))).kind == "jwt"


async def test_a_client_not_allowed_is_forbidden(make_verifier: Any, issuer: Issuer, rsa_key: SigningKey) -> None:
    verifier = make_verifier(allowed_clients=["web-app"])

    message = await refused(verifier, issuer.token(rsa_key, azp="rogue"), ForbiddenError)
    assert "client 'rogue'" in message and "allowed_clients" in message
    await refused(verifier, issuer.token(rsa_key), ForbiddenError)  # no client claim at all
    assert (await verifier.verify(issuer.token(rsa_key, client_id="web-app"))).client_id == "web-app"


async def test_a_missing_scope_is_forbidden(make_verifier: Any, issuer: Issuer, rsa_key: SigningKey) -> None:
    verifier = make_verifier(required_scopes=["chat", "bots:write"])

    message = await refused(verifier, issuer.token(rsa_key, scope="chat"), ForbiddenError)
    assert "bots:write" in message and "chat," not in message
    assert (await verifier.verify(issuer.token(rsa_key, scope="openid chat bots:write"))).scopes >= {"chat"}
    assert (await verifier.verify(issuer.token(rsa_key, scp=["chat", "bots:write"]))).kind == "jwt"


async def test_a_tampered_token_fails_its_signature(
    verifier: OidcVerifier, issuer: Issuer, rsa_key: SigningKey
) -> None:
    header, _, signature = issuer.token(rsa_key).split(".")
    forged = issuer.token(rsa_key, sub="mallory").split(".")[1]

    message = await refused(verifier, f"{header}.{forged}.{signature}")

    assert "signature does not verify" in message


async def test_an_unsigned_token_is_refused(verifier: OidcVerifier, issuer: Issuer, rsa_key: SigningKey) -> None:
    claims = jwt.decode(issuer.token(rsa_key), options={"verify_signature": False})
    token = segments({"alg": "none", "kid": rsa_key.kid}, claims) + "."

    assert "algorithm 'none', which is not accepted" in await refused(verifier, token)


async def test_an_hmac_token_keyed_with_the_public_key_is_refused(
    verifier: OidcVerifier, issuer: Issuer, rsa_key: SigningKey
) -> None:
    # Algorithm confusion: a verifier that let the token pick HS256 would check it with the public key as the secret.
    claims = jwt.decode(issuer.token(rsa_key), options={"verify_signature": False})
    signing_input = segments({"alg": "HS256", "typ": "JWT", "kid": rsa_key.kid}, claims)
    signature = hmac.new(rsa_key.public_pem(), signing_input.encode(), hashlib.sha256).digest()

    message = await refused(verifier, f"{signing_input}.{b64(signature)}")

    assert "algorithm 'HS256', which is not accepted" in message


async def test_a_token_whose_alg_differs_from_its_key_is_refused(
    make_verifier: Any, issuer: Issuer, rsa_key: SigningKey, ec_key: SigningKey
) -> None:
    verifier = make_verifier()
    mislabelled = jwt.encode(
        {"iss": issuer.url, "aud": AUDIENCE, "sub": "a"}, ec_key.private, "ES256", {"kid": "rsa-1"}
    )

    assert "does not match its key" in await refused(verifier, mislabelled)


@pytest.mark.parametrize("algorithms", [["none"], ["HS256"], ["RS256", "HS512"], []])
def test_settings_refuse_unsigned_and_shared_secret_algorithms(algorithms: list[str]) -> None:
    with pytest.raises(ValidationError):
        OidcSettings(issuer="https://idp.example.com", audience=["api"], algorithms=algorithms)


def test_settings_require_an_audience() -> None:
    with pytest.raises(ValidationError):
        OidcSettings(issuer="https://idp.example.com", audience=[])


@pytest.mark.parametrize("token", ["not-a-jwt", "a.b", "a.b.c.d", "bad header!.e30.x", "e30K.e30.x", "YWJj.e30.x"])
async def test_malformed_tokens_are_refused(verifier: OidcVerifier, token: str) -> None:
    message = await refused(verifier, token)
    assert "not a JWT" in message or "malformed" in message or "not accepted" in message


async def test_keys_are_cached_and_fetched_again_after_jwks_cache_s(
    verifier: OidcVerifier, issuer: Issuer, rsa_key: SigningKey, ec_key: SigningKey, clock: Clock
) -> None:
    for n in range(20):
        await verifier.verify(issuer.token(rsa_key if n % 2 else ec_key, sub=f"user-{n}"))
    assert issuer.hits["jwks"] == 1

    clock.now += 600
    await verifier.verify(issuer.token(rsa_key, exp=int(clock.now) + 60))
    assert issuer.hits["jwks"] == 2


async def test_concurrent_verifications_share_one_fetch(
    verifier: OidcVerifier, issuer: Issuer, rsa_key: SigningKey
) -> None:
    issuer.delay_s = 0.1
    tokens = [issuer.token(rsa_key, sub=f"user-{n}") for n in range(10)]

    principals = await asyncio.gather(*(verifier.verify(token) for token in tokens))

    assert len({p.user_id for p in principals}) == 10
    assert issuer.hits["jwks"] == 1


async def test_a_rotated_key_is_fetched_when_a_token_names_it(
    verifier: OidcVerifier, issuer: Issuer, rsa_key: SigningKey, rsa_key_2: SigningKey, clock: Clock
) -> None:
    await verifier.verify(issuer.token(rsa_key))
    issuer.keys = [rsa_key_2]  # the issuer rotates: the old key is gone, a new one signs
    clock.now += 31

    principal = await verifier.verify(issuer.token(rsa_key_2, exp=int(clock.now) + 60))

    assert principal.user_id is not None
    assert issuer.hits["jwks"] == 2
    message = await refused(verifier, issuer.token(rsa_key, exp=int(clock.now) + 60))  # the retired key
    assert "does not publish (kid 'rsa-1')" in message
    assert issuer.hits["jwks"] == 2  # refetched 0 s ago: not again


async def test_a_flood_of_unknown_key_ids_refetches_at_most_once_per_min_refresh(
    verifier: OidcVerifier, issuer: Issuer, rsa_key: SigningKey, clock: Clock
) -> None:
    await verifier.verify(issuer.token(rsa_key))
    bogus = [jwt.encode({"sub": "x"}, rsa_key.private, "RS256", {"kid": f"bogus-{n}"}) for n in range(50)]

    for token in bogus:
        await refused(verifier, token)
    assert issuer.hits["jwks"] == 1  # the keys were fetched less than jwks_min_refresh_s ago

    clock.now += 30
    for token in bogus:
        await refused(verifier, token)
    assert issuer.hits["jwks"] == 2

    clock.now += 29
    await refused(verifier, bogus[0])
    assert issuer.hits["jwks"] == 2


async def test_an_unreachable_issuer_refuses_tokens_with_401_and_a_warning(
    make_verifier: Any, issuer: Issuer, rsa_key: SigningKey, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    verifier = make_verifier(jwks_url=f"http://127.0.0.1:{closed}/keys")
    token = issuer.token(rsa_key)

    with caplog.at_level(logging.WARNING, logger="botfactory.identity.oidc"):
        message = await refused(verifier, token)

    assert f"keys of issuer {issuer.url} could not be fetched" in message
    assert any("cannot fetch the issuer's keys" in record.getMessage() for record in caplog.records)


async def test_an_issuer_that_fails_is_asked_again_after_a_pause_and_old_keys_keep_working(
    verifier: OidcVerifier, issuer: Issuer, rsa_key: SigningKey, clock: Clock
) -> None:
    issuer.down = True
    token = issuer.token(rsa_key, exp=int(NOW) + 3600)
    for _ in range(5):
        assert "could not be fetched" in await refused(verifier, token)
    assert issuer.hits["jwks"] == 1  # a failed fetch is not repeated for every request

    issuer.down = False
    clock.now += 5
    assert (await verifier.verify(token)).kind == "jwt"
    assert issuer.hits["jwks"] == 2

    issuer.down = True
    clock.now += 600  # the cache is stale, the issuer is down: the keys fetched before still verify
    assert (await verifier.verify(token)).kind == "jwt"
    assert issuer.hits["jwks"] == 3


async def test_discovery_naming_another_issuer_is_not_trusted(
    make_verifier: Any, issuer: Issuer, rsa_key: SigningKey
) -> None:
    verifier = make_verifier(jwks_url=None, issuer=issuer.url + "/other")

    assert "could not be fetched" in await refused(verifier, issuer.token(rsa_key, iss=issuer.url + "/other"))
    assert issuer.hits["jwks"] == 0


async def test_a_verifier_closes_only_the_client_it_made(issuer: Issuer) -> None:
    settings = OidcSettings(issuer=issuer.url, audience=[AUDIENCE])
    async with httpx.AsyncClient() as client:
        await OidcVerifier(settings, http=client).aclose()
        assert not client.is_closed
