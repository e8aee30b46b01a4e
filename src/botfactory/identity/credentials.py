"""The values of the credentials a tool declares, resolved at call time for the user the call is made for.

Three kinds (the gateway's ``CredentialRef.kind``):

- ``secret``: the platform-wide vault entry ``source``.
- ``oauth_client``: an access token of the OAuth client ``source`` (:class:`ClientCredentialsTokens`).
- ``user_token``: the calling user's own vault entry ``source`` (:class:`UserTokens`). A call for another user gets
  that user's entry or an error, a call for no user an error; never someone else's token or a platform secret of
  the same name.

Values go only to the gateway, which hands them to the tool; they are never logged, traced or shown to a model.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Final, Protocol

from botfactory.errors import CredentialError, InvalidInputError, SecretNotFoundError, SecretUnreadableError
from botfactory.identity.oauth import ClientCredentialsTokens
from botfactory.identity.user_tokens import UserTokens
from botfactory.identity.vault import Vault

__all__ = ["CredentialRequest", "Credentials"]

_CACHE_SIZE: Final = 4096

logger = logging.getLogger(__name__)


class CredentialRequest(Protocol):
    """A credential a tool declares, as the gateway's ``CredentialRef`` describes it."""

    @property
    def name(self) -> str:
        """The key the tool finds the value under."""
        ...

    @property
    def kind(self) -> str:
        """``secret``, ``oauth_client`` or ``user_token``."""
        ...

    @property
    def source(self) -> str:
        """The vault entry or OAuth client the value comes from."""
        ...


class Credentials:
    """Resolves declared credentials from the vault and the OAuth token cache; the gateway's credential provider.

    Values read from the vault are kept in memory for ``cache_s`` (a vault read is a database round trip and a
    decryption, milliseconds on every tool call otherwise): a secret changed with ``botfactory secrets set`` is used
    by running processes within that time.

    Args:
        vault: Platform secrets and users' own tokens.
        oauth: Tokens of the configured OAuth clients; ``None``: no ``oauth_client`` credential can be resolved.
        cache_s: How long a value read from the vault is reused; 0 reads it on every call.
    """

    def __init__(
        self,
        vault: Vault,
        oauth: ClientCredentialsTokens | None = None,
        *,
        cache_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._vault = vault
        self._users = UserTokens(vault)
        self._oauth = oauth
        self._cache_s = cache_s
        self._clock = clock
        self._cache: OrderedDict[tuple[str, str], tuple[str, float]] = OrderedDict()

    async def _cached(self, key: tuple[str, str], read: Callable[[], Awaitable[str]]) -> str:
        now = self._clock()
        hit = self._cache.get(key)
        if hit is not None and now - hit[1] < self._cache_s:
            return hit[0]
        value = await read()
        if self._cache_s > 0:
            self._cache[key] = (value, now)
            self._cache.move_to_end(key)
            if len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return value

    async def resolve(self, refs: Sequence[CredentialRequest], *, user_id: str | None) -> dict[str, str]:
        """The value of each credential, by its name.

        Args:
            refs: The credentials the tool declares.
            user_id: The principal the call is made for (``slack:T1:U2``); ``None`` when the channel knows none.

        Raises:
            CredentialError: One cannot be provided; the message names it and says how to provide it, never a
                value.
        """
        values: dict[str, str] = {}
        for ref in refs:
            try:
                values[ref.name] = await self._resolve(ref, user_id)
            except CredentialError as exc:
                logger.warning(
                    "credential=<%s>, kind=<%s>, user_id=<%s> | credential unavailable: %s",
                    ref.name,
                    ref.kind,
                    user_id,
                    exc.message,
                )
                raise
            logger.debug("credential=<%s>, kind=<%s>, user_id=<%s> | credential resolved", ref.name, ref.kind, user_id)
        return values

    def forget(self, refs: Sequence[CredentialRequest], values: Mapping[str, str], *, user_id: str | None) -> bool:
        """Forget what was resolved for ``refs``: the service a tool called refused it (HTTP 401).

        Vault values are read again on next use (a secret replaced with ``botfactory secrets set`` is picked up at
        once, not after the cache time) and OAuth tokens are fetched anew. Whether resolving again may give a
        different value right away (an OAuth token was dropped), so one retry of the call can succeed.
        """
        renewed = False
        for ref in refs:
            if ref.kind == "secret":
                self._cache.pop(("", ref.source), None)
            elif ref.kind == "user_token" and user_id:
                self._cache.pop((user_id, ref.source), None)
            elif ref.kind == "oauth_client" and self._oauth is not None and ref.name in values:
                renewed = self._oauth.forget(ref.source, values[ref.name]) or renewed
        return renewed

    async def _resolve(self, ref: CredentialRequest, user_id: str | None) -> str:
        if ref.kind == "secret":
            return await self._secret(ref)
        if ref.kind == "oauth_client":
            if self._oauth is None:
                raise CredentialError(
                    f"credential {ref.name} uses OAuth client {ref.source!r}, and no OAuth clients are set up here; "
                    f"add [oauth_clients.{ref.source}] to botfactory.toml"
                )
            return await self._oauth.token(ref.source)
        if ref.kind == "user_token":
            return await self._user_token(ref, user_id)
        raise CredentialError(
            f"credential {ref.name} has unknown kind {ref.kind!r}; declare it as secret, oauth_client or user_token"
        )

    async def _secret(self, ref: CredentialRequest) -> str:
        try:
            return await self._cached(("", ref.source), lambda: self._vault.get(ref.source))
        except SecretNotFoundError:
            raise CredentialError(
                f"credential {ref.name} needs the platform secret {ref.source!r}, which is not in the vault; store "
                f"it with `botfactory secrets set {ref.source}`"
            ) from None
        except SecretUnreadableError as exc:
            raise CredentialError(f"credential {ref.name} cannot be read: {exc.message}") from None

    async def _user_token(self, ref: CredentialRequest, user_id: str | None) -> str:
        if not user_id:
            raise CredentialError(
                f"credential {ref.name} needs the calling user's own token, and this call is made for no user; "
                "call the tool from a channel that identifies the user (Slack, an API key or token with a user)"
            )
        try:
            return await self._cached((user_id, ref.source), lambda: self._users.get(user_id, ref.source))
        except SecretNotFoundError:
            raise CredentialError(
                f"credential {ref.name} needs the calling user's own token {ref.source!r}, and user {user_id} has "
                f"not stored one; store it with `botfactory secrets set {ref.source} --user {user_id}`"
            ) from None
        except (SecretUnreadableError, InvalidInputError) as exc:
            raise CredentialError(f"credential {ref.name} of user {user_id} cannot be read: {exc.message}") from None
