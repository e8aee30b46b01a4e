"""JWT bearer tokens from an OpenID Connect issuer: verify one and turn it into a :class:`Principal`.

The issuer's public keys (its JWKS) are fetched over HTTP, from ``[oidc] jwks_url`` or from the ``jwks_uri`` of the
issuer's discovery document, and kept for ``jwks_cache_s``. Issuers rotate keys by publishing a new one before
signing with it, so a token naming a key id (``kid``) not in the cache fetches the keys again, at most once per
``jwks_min_refresh_s``: a flood of made-up key ids costs the issuer one request per interval. Verifications that need
the keys at the same moment wait for one shared fetch. When the issuer cannot be reached, keys fetched earlier keep
being used; with none, tokens are refused (401) until it can be reached again (asked at most every 5 seconds).

A token passes when its ``alg`` is one of ``algorithms`` (never ``none`` nor ``HS*``, so a public key cannot be
used as an HMAC secret), its signature verifies with the issuer's key of that ``kid``, ``iss`` is the issuer,
``aud`` names one of ``audience``, ``exp``, ``nbf`` and ``iat`` hold within ``leeway_s``, and it carries the user
claim. Its client and scopes are then checked (403 when they fall short). The user id is
``oidc:<issuer host and path>:<user claim>``, e.g. ``oidc:idp.example.com/realms/acme:248289761001``: stable while
the issuer's URL is, readable, and never equal to a user id of another issuer.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
import jwt

from botfactory.config import OidcSettings
from botfactory.errors import ForbiddenError, UnauthenticatedError
from botfactory.identity.api_keys import Principal

__all__ = ["JWT_SHAPE", "OidcVerifier", "oidc_user_id"]

logger = logging.getLogger(__name__)

JWT_SHAPE: Final = re.compile(r"[A-Za-z0-9_-]+={0,2}\.[A-Za-z0-9_-]+={0,2}\.[A-Za-z0-9_-]*={0,2}")
"""A compact JWS: three base64url segments (the last empty for an unsigned token, which is then refused)."""
_FETCH_TIMEOUT_S: Final = 10.0
_RETRY_AFTER_FAILURE_S: Final = 5.0
_MAX_DOCUMENT_BYTES: Final = 512 * 1024
_MAX_USER_ID_CHARS: Final = 256
_LOOPBACK_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "::1"})
_HOW: Final = "send a token from the configured issuer in Authorization: Bearer <token>"


def oidc_user_id(issuer: str, subject: str) -> str:
    """The botfactory user id of ``subject`` at ``issuer``: ``oidc:<issuer host and path>:<subject>``."""
    parts = urlsplit(issuer)
    label = (parts.netloc + parts.path).rstrip("/") or issuer
    return f"oidc:{label}:{subject}"


class OidcVerifier:
    """Verifies JWT bearer tokens against an issuer's keys; one per process, shared by all requests.

    Args:
        settings: The ``[oidc]`` settings.
        http: The client that fetches the issuer's documents; default a new one, closed by :meth:`aclose`.
        clock: Wall-clock seconds since the epoch, for the token's times and the key cache; tests inject one.
    """

    def __init__(
        self,
        settings: OidcSettings,
        *,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._owns_http = http is None
        self._http = http if http is not None else httpx.AsyncClient(timeout=_FETCH_TIMEOUT_S)
        self._clock = clock
        self._jwks_url = settings.jwks_url
        self._keys: dict[str, dict[str, Any]] = {}
        self._built: dict[tuple[str, str], jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._attempts = 0
        self._failure: UnauthenticatedError | None = None
        self._lock = asyncio.Lock()
        # After a failed fetch, the issuer is asked again at most this often, however many requests arrive.
        self._retry_s = min(settings.jwks_min_refresh_s, _RETRY_AFTER_FAILURE_S)
        for url in (settings.issuer, settings.jwks_url):
            if url is not None and _insecure(url):
                logger.warning("url=<%s> | the issuer's keys are fetched without TLS; use https outside tests", url)

    async def aclose(self) -> None:
        """Close the HTTP client, if this verifier made it."""
        if self._owns_http:
            await self._http.aclose()

    async def verify(self, token: str) -> Principal:
        """The principal a bearer token stands for.

        Raises:
            UnauthenticatedError: The token is malformed, expired or not yet valid, not signed by the issuer's key,
                for another issuer or audience, or the issuer's keys cannot be fetched.
            ForbiddenError: The token's client is not allowed, or it lacks a required scope.
        """
        settings = self.settings
        header = _header(token)
        alg = header.get("alg")
        if alg not in settings.algorithms:
            shown = alg if isinstance(alg, str) and len(alg) <= 16 and alg.isprintable() else "?"
            raise UnauthenticatedError(
                f"the token is signed with algorithm '{shown}', which is not accepted "
                f"(accepted: {', '.join(settings.algorithms)}); {_HOW}"
            )
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise UnauthenticatedError(f"the token's key id (kid) is not a string; {_HOW}")
        key = await self._key(kid, alg)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=settings.audience,
                issuer=settings.issuer,
                options={"verify_exp": False, "verify_nbf": False, "verify_iat": False, "require": ["exp"]},
            )
        except jwt.InvalidTokenError as exc:
            raise _refusal(exc, settings) from None
        self._check_times(claims)
        principal = self._principal(claims)
        logger.debug("user_id=<%s>, client_id=<%s> | token verified", principal.user_id, principal.client_id)
        return principal

    def _check_times(self, claims: dict[str, Any]) -> None:
        now, leeway = self._clock(), self.settings.leeway_s
        exp, nbf, iat = (_number(claims, name) for name in ("exp", "nbf", "iat"))
        if exp is not None and exp <= now - leeway:
            raise UnauthenticatedError(f"the token has expired; get a new one from the issuer and {_HOW}")
        for name, value in (("nbf", nbf), ("iat", iat)):
            if value is not None and value > now + leeway:
                raise UnauthenticatedError(
                    f"the token is not valid yet ({name} is in the future); check this machine's clock or retry later"
                )

    def _principal(self, claims: dict[str, Any]) -> Principal:
        settings = self.settings
        subject = claims.get(settings.user_claim)
        if not isinstance(subject, str) or not subject:
            raise UnauthenticatedError(
                f"the token has no '{settings.user_claim}' claim naming the user; "
                "configure the issuer to include it or set [oidc] user_claim"
            )
        user_id = oidc_user_id(settings.issuer, subject)
        if len(user_id) > _MAX_USER_ID_CHARS or not user_id.isprintable():
            raise UnauthenticatedError(
                f"the token's '{settings.user_claim}' claim is too long or not printable for a user id "
                f"(at most {_MAX_USER_ID_CHARS} characters with the issuer); set [oidc] user_claim to another claim"
            )
        client = claims.get("azp") or claims.get("client_id")
        client_id = client if isinstance(client, str) else None
        if settings.allowed_clients and client_id not in settings.allowed_clients:
            raise ForbiddenError(
                f"the token was issued to client '{client_id or '(none)'}', which may not call this server; "
                "use an allowed client or add it to [oidc] allowed_clients"
            )
        scopes = _strings(claims.get("scope"), split=True) | _strings(claims.get("scp"), split=True)
        missing = [scope for scope in settings.required_scopes if scope not in scopes]
        if missing:
            raise ForbiddenError(
                f"the token lacks the scope(s) {', '.join(missing)}; request them from the issuer when getting a token"
            )
        return Principal(
            kind="jwt",
            bot=settings.bot,
            user_id=user_id,
            groups=_strings(claims.get(settings.groups_claim), split=False),
            scopes=scopes,
            client_id=client_id,
        )

    async def _key(self, kid: str | None, alg: str) -> jwt.PyJWK:
        """The issuer's key for ``kid``, fetching the keys when the cache is empty, stale, or lacks ``kid``."""
        now = self._clock()
        if self._fetched_at is None or now - self._fetched_at >= self.settings.jwks_cache_s:
            if self._failure is None or self._attempted_at is None or now - self._attempted_at >= self._retry_s:
                await self._refresh()
            if self._failure is not None and self._fetched_at is None:
                raise self._failure
        jwk = self._find(kid)
        if jwk is None and self._may_refetch():
            await self._refresh()
            jwk = self._find(kid)
        if jwk is None:
            if kid is None:
                raise UnauthenticatedError(
                    f"the token names no key (kid) and the issuer publishes several or none; {_HOW}"
                )
            raise UnauthenticatedError(
                f"the token is signed with a key the issuer does not publish (kid {kid[:64]!r}); "
                "get a new token, or wait for the issuer's new keys to be fetched"
            )
        wanted = jwk.get("alg")
        if isinstance(wanted, str) and wanted != alg:
            raise UnauthenticatedError(
                f"the token's algorithm does not match its key (the issuer's key is for {wanted[:16]}); {_HOW}"
            )
        cache_key = (str(jwk.get("kid")), alg)
        key = self._built.get(cache_key)
        if key is None:
            try:
                key = jwt.PyJWK(jwk, algorithm=alg)
            except jwt.PyJWTError:
                raise UnauthenticatedError(
                    f"the issuer's key for this token cannot verify {alg} signatures; {_HOW}"
                ) from None
            self._built[cache_key] = key
        return key

    def _find(self, kid: str | None) -> dict[str, Any] | None:
        if kid is not None:
            return self._keys.get(kid)
        return next(iter(self._keys.values())) if len(self._keys) == 1 else None

    def _may_refetch(self) -> bool:
        return self._attempted_at is None or self._clock() - self._attempted_at >= self.settings.jwks_min_refresh_s

    async def _refresh(self) -> None:
        """Fetch the keys; callers arriving while a fetch runs share its outcome instead of fetching again.

        A failure is kept in ``_failure`` (and logged) and the keys fetched before stay in use.
        """
        seen = self._attempts
        async with self._lock:
            if self._attempts == seen:
                await self._fetch()

    async def _fetch(self) -> None:
        try:
            if self._jwks_url is None:
                self._jwks_url = await self._discover()
            document = await self._get_json(self._jwks_url)
            keys = _signing_keys(document)
        except (httpx.HTTPError, ValueError) as exc:
            logger.warning(
                "issuer=<%s>, error=<%s> | cannot fetch the issuer's keys: %s",
                self.settings.issuer,
                type(exc).__name__,
                exc,
            )
            self._failure = UnauthenticatedError(
                f"the keys of issuer {self.settings.issuer} could not be fetched, so no token can be verified; "
                "retry later, and check [oidc] issuer / jwks_url and the server log"
            )
            return
        finally:
            self._finished()
        if keys != self._keys:
            logger.info("issuer=<%s>, keys=<%s> | fetched the issuer's keys", self.settings.issuer, ",".join(keys))
        self._keys = keys
        self._built = {k: v for k, v in self._built.items() if k[0] in keys}
        self._fetched_at = self._attempted_at
        self._failure = None

    def _finished(self) -> None:
        # Counted when a fetch ends, not when it starts: callers that arrived while it ran then take its outcome.
        self._attempts += 1
        self._attempted_at = self._clock()

    async def _discover(self) -> str:
        url = self.settings.issuer.rstrip("/") + "/.well-known/openid-configuration"
        document = await self._get_json(url)
        if document.get("issuer") != self.settings.issuer:
            raise ValueError(f"the discovery document at {url} names another issuer; set [oidc] issuer to its value")
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri:
            raise ValueError(f"the discovery document at {url} has no jwks_uri; set [oidc] jwks_url")
        return jwks_uri

    async def _get_json(self, url: str) -> dict[str, Any]:
        response = await self._http.get(url, headers={"accept": "application/json"})
        response.raise_for_status()
        if len(response.content) > _MAX_DOCUMENT_BYTES:
            raise ValueError(f"{url} answered {len(response.content)} bytes, more than a key set should be")
        document = response.json()
        if not isinstance(document, dict):
            raise ValueError(f"{url} did not answer a JSON object")
        return document


def _header(token: str) -> dict[str, Any]:
    if JWT_SHAPE.fullmatch(token) is None:
        raise UnauthenticatedError(f"the bearer token is not a JWT (three base64url segments); {_HOW}")
    try:
        return jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise UnauthenticatedError(f"the bearer token is malformed: its header is not valid JSON; {_HOW}") from None


def _signing_keys(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The JWKS's signature keys by ``kid`` (keys for encryption, or without an id, are left out)."""
    keys = document.get("keys")
    if not isinstance(keys, list):
        raise ValueError("the JWKS has no 'keys' list")
    found: dict[str, dict[str, Any]] = {}
    for jwk in keys:
        if isinstance(jwk, dict) and isinstance(jwk.get("kid"), str) and jwk.get("use", "sig") == "sig":
            found[jwk["kid"]] = jwk
    return found


def _refusal(exc: jwt.InvalidTokenError, settings: OidcSettings) -> UnauthenticatedError:
    """Our error for PyJWT's, saying what is wrong without repeating the token."""
    if isinstance(exc, jwt.InvalidSignatureError):
        message = "the token's signature does not verify with the issuer's key"
    elif isinstance(exc, jwt.InvalidIssuerError):
        message = f"the token was not issued by {settings.issuer} (its iss claim differs)"
    elif isinstance(exc, jwt.InvalidAudienceError) or (
        isinstance(exc, jwt.MissingRequiredClaimError) and exc.claim == "aud"
    ):
        message = f"the token is not meant for this server: its aud claim names none of {', '.join(settings.audience)}"
    elif isinstance(exc, jwt.MissingRequiredClaimError):
        message = f"the token has no '{exc.claim}' claim"
    elif isinstance(exc, jwt.InvalidAlgorithmError):
        message = "the token's algorithm does not match the issuer's key"
    elif isinstance(exc, jwt.DecodeError):
        message = "the bearer token is malformed"
    else:
        message = "the token is invalid"
    return UnauthenticatedError(f"{message}; {_HOW}")


def _number(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UnauthenticatedError(f"the token's {name} claim is not a number of seconds; {_HOW}")
    return float(value)


def _strings(value: Any, *, split: bool) -> frozenset[str]:
    """A claim holding one string (space-separated when ``split``) or a list of strings, as a set."""
    if isinstance(value, str):
        return frozenset(value.split()) if split else frozenset({value})
    if isinstance(value, list):
        return frozenset(item for item in value if isinstance(item, str))
    return frozenset()


def _insecure(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme != "https" and parts.hostname not in _LOOPBACK_HOSTS
