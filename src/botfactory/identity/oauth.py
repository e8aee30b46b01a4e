"""OAuth2 client-credentials access tokens for outbound calls: fetched, cached until they expire, refreshed.

Each client is an ``[oauth_clients.<name>]`` entry of the settings; its client secret is read from the vault
(``oauth/<name>`` unless ``client_secret`` names another entry) each time a token is fetched, so a secret set again
is used from the next fetch on. A token is kept until ``expires_in`` minus ``refresh_margin_s`` (at most half its
lifetime), or five minutes when the provider gives no ``expires_in``. Callers that need a client's token while it
is being fetched wait for that one request; a failed fetch is not kept, so the next call asks again.

Neither the client secret nor a token is ever logged or placed in an error message: errors name the client, the
token endpoint, the HTTP status and the provider's OAuth error code, and say what to check.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote_plus, urlsplit

import httpx

from botfactory.config import OAuthClientConfig
from botfactory.errors import CredentialError, SecretNotFoundError, SecretUnreadableError
from botfactory.identity.vault import Vault

__all__ = ["DEFAULT_TOKEN_LIFETIME_S", "ClientCredentialsTokens"]

logger = logging.getLogger(__name__)

DEFAULT_TOKEN_LIFETIME_S: Final = 300.0
"""How long a token is kept when the provider does not say when it expires."""
_MAX_RESPONSE_BYTES: Final = 64 * 1024
_MAX_ERROR_CODE_CHARS: Final = 64
_LOOPBACK_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "::1"})


@dataclass(frozen=True)
class _Token:
    value: str
    refresh_at: float


class ClientCredentialsTokens:
    """Access tokens of the configured OAuth clients; one per process, shared by every tool call.

    Args:
        clients: The OAuth clients by name (``Settings.oauth_clients``).
        vault: Where the client secrets are (platform-wide entries).
        http: The client that calls the token endpoints; default a new one, closed by :meth:`aclose`.
        clock: Wall-clock seconds; tests inject one to move past a token's expiry without sleeping.
        refresh_margin_s: A token is replaced this long before it expires (at most half its lifetime), so a call
            never starts with a token about to lapse.

    Example:
        >>> tokens = ClientCredentialsTokens(settings.oauth_clients, vault)  # doctest: +SKIP
        >>> headers = {"authorization": f"Bearer {await tokens.token('crm')}"}  # doctest: +SKIP
    """

    def __init__(
        self,
        clients: Mapping[str, OAuthClientConfig],
        vault: Vault,
        *,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
        refresh_margin_s: float = 30.0,
    ) -> None:
        self.clients = dict(clients)
        self._vault = vault
        self._owns_http = http is None
        self._http = http if http is not None else httpx.AsyncClient()
        self._clock = clock
        self._margin_s = refresh_margin_s
        self._tokens: dict[str, _Token] = {}
        self._fetching: dict[str, asyncio.Task[str]] = {}
        for name, config in self.clients.items():
            if _insecure(config.token_url):
                logger.warning(
                    "client=<%s>, url=<%s> | the client secret is sent without TLS; use https outside tests",
                    name,
                    config.token_url,
                )

    async def token(self, client: str) -> str:
        """A valid access token of ``client``; hand it to the tool that needs it, never to a log or a model.

        Raises:
            CredentialError: The client is not configured, its secret is not in the vault, or its token endpoint
                refused or could not be reached (``retryable`` when it may work later).
        """
        config = self.clients.get(client)
        if config is None:
            configured = ", ".join(sorted(self.clients)) or "none"
            raise CredentialError(
                f"no OAuth client {client!r} is configured (configured: {configured}); add [oauth_clients.{client}] "
                "with token_url and client_id to botfactory.toml, or fix the tool's credential"
            )
        cached = self._tokens.get(client)
        if cached is not None and self._clock() < cached.refresh_at:
            return cached.value
        task = self._fetching.get(client)
        if task is None:
            task = asyncio.create_task(self._fetch(client, config), name=f"oauth-token-{client}")
            task.add_done_callback(_retrieve)
            self._fetching[client] = task
        # Shielded: a caller that gives up does not cancel the fetch the other callers wait for.
        return await asyncio.shield(task)

    def forget(self, client: str, token: str) -> bool:
        """Drop ``client``'s cached token if it is still ``token``: the service it was sent to refused it (HTTP 401,
        e.g. revoked before it expired), so the next :meth:`token` fetches a new one. Whether it was dropped."""
        cached = self._tokens.get(client)
        if cached is None or cached.value != token:
            return False  # already replaced by a newer token: keep that one
        del self._tokens[client]
        logger.info("client=<%s> | OAuth access token refused by a service; a new one is fetched next", client)
        return True

    async def aclose(self) -> None:
        """Stop fetches under way and close the HTTP client, if this object made it."""
        tasks = list(self._fetching.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._owns_http:
            await self._http.aclose()

    async def _fetch(self, client: str, config: OAuthClientConfig) -> str:
        try:
            requested_at = self._clock()
            token, lifetime_s = await self._request(client, config)
            if lifetime_s is None:
                refresh_at = requested_at + DEFAULT_TOKEN_LIFETIME_S
            else:
                refresh_at = requested_at + lifetime_s - min(self._margin_s, lifetime_s / 2)
            self._tokens[client] = _Token(token, refresh_at)
            logger.info(
                "client=<%s>, expires_in=<%s> | fetched an OAuth access token",
                client,
                "unknown" if lifetime_s is None else f"{lifetime_s:g}",
            )
            return token
        except CredentialError as exc:
            self._tokens.pop(client, None)
            logger.warning("client=<%s>, error=<%s> | no OAuth access token", client, exc.message)
            raise
        finally:
            self._fetching.pop(client, None)

    async def _request(self, client: str, config: OAuthClientConfig) -> tuple[str, float | None]:
        secret = await self._client_secret(client, config)
        form = {"grant_type": "client_credentials"}
        if config.scopes:
            form["scope"] = " ".join(config.scopes)
        if config.audience:
            form["audience"] = config.audience
        headers = {"accept": "application/json"}
        if config.auth_method == "client_secret_basic":
            # RFC 6749 §2.3.1: id and secret are form-encoded before they are joined and base64-encoded.
            pair = f"{quote_plus(config.client_id)}:{quote_plus(secret)}".encode()
            headers["authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        else:
            form |= {"client_id": config.client_id, "client_secret": secret}
        where = f"OAuth client {client!r} (token endpoint {config.token_url})"
        try:
            response = await self._http.post(config.token_url, data=form, headers=headers, timeout=config.timeout_s)
        except httpx.HTTPError as exc:
            raise CredentialError(
                f"cannot reach the token endpoint of {where}: {type(exc).__name__}; check [oauth_clients.{client}] "
                "token_url and that the provider is up",
                retryable=True,
            ) from None
        body = _json_object(response)
        if response.status_code != 200:
            raise _refusal(client, config, where, response.status_code, body)
        if body is None:
            raise CredentialError(
                f"the token endpoint of {where} did not answer a JSON object; check [oauth_clients.{client}] token_url"
            )
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise CredentialError(
                f"the token endpoint of {where} answered without an access_token; check [oauth_clients.{client}] "
                "token_url"
            )
        return token, _lifetime(body.get("expires_in"))

    async def _client_secret(self, client: str, config: OAuthClientConfig) -> str:
        entry = config.client_secret or f"oauth/{client}"
        try:
            return await self._vault.get(entry)
        except SecretNotFoundError:
            raise CredentialError(
                f"the client secret of OAuth client {client!r} is not in the vault; store it with "
                f"`botfactory secrets set {entry}`"
            ) from None
        except SecretUnreadableError as exc:
            raise CredentialError(
                f"the client secret of OAuth client {client!r} cannot be read: {exc.message}"
            ) from None


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    if len(response.content) > _MAX_RESPONSE_BYTES:
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _refusal(
    client: str, config: OAuthClientConfig, where: str, status: int, body: dict[str, Any] | None
) -> CredentialError:
    """Our error for a token endpoint's refusal: its status and OAuth error code, never its body."""
    code = body.get("error") if body is not None else None
    shown = code if isinstance(code, str) and code.isprintable() and len(code) <= _MAX_ERROR_CODE_CHARS else None
    said = f"HTTP {status}" + (f", {shown}" if shown else "")
    entry = config.client_secret or f"oauth/{client}"
    if status >= 500 or status == 429:
        return CredentialError(
            f"the token endpoint of {where} failed ({said}); retry later, and check the provider's status",
            retryable=True,
        )
    if shown in {"invalid_client", "unauthorized_client"} or status == 401:
        hint = (
            f"check [oauth_clients.{client}] client_id and auth_method, and the client secret "
            f"(`botfactory secrets set {entry}`)"
        )
    elif shown == "invalid_scope":
        hint = f"check [oauth_clients.{client}] scopes"
    else:
        hint = f"check [oauth_clients.{client}] token_url, client_id, scopes and audience"
    return CredentialError(f"the token endpoint of {where} refused ({said}); {hint}")


def _lifetime(expires_in: Any) -> float | None:
    """``expires_in`` in seconds; ``None`` when absent or unusable (some providers send it as a string)."""
    if isinstance(expires_in, bool):
        return None
    if isinstance(expires_in, str):
        try:
            expires_in = float(expires_in)
        except ValueError:
            return None
    if isinstance(expires_in, int | float) and math.isfinite(expires_in) and expires_in > 0:
        return float(expires_in)
    return None


def _retrieve(task: asyncio.Task[str]) -> None:
    # Every caller may have given up; the outcome is still consumed so asyncio does not report it as lost.
    if not task.cancelled():
        task.exception()


def _insecure(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme != "https" and parts.hostname not in _LOOPBACK_HOSTS
