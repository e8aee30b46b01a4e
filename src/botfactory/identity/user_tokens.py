"""Per-user tokens: a user's own credential (their GitHub token, their calendar token), used only for their calls.

They are vault secrets whose owner is ``user:<principal>``, e.g. ``user:slack:T1:U2`` for the Slack user ``U2`` of
workspace ``T1``: the vault binds each ciphertext to its owner, so one user's row copied under another user fails to
decrypt rather than being handed out. Store one with ``botfactory secrets set NAME --user PRINCIPAL``.
"""

from __future__ import annotations

from typing import Final

from botfactory.errors import InvalidInputError, SecretNotFoundError
from botfactory.identity.vault import SecretInfo, Vault

__all__ = ["USER_OWNER_PREFIX", "UserTokens", "user_owner"]

USER_OWNER_PREFIX: Final = "user:"
"""The vault owner of a user's tokens is this prefix followed by the user's principal."""


def user_owner(principal: str) -> str:
    """The vault owner under which ``principal``'s own tokens are kept (``user:<principal>``).

    Raises:
        InvalidInputError: The principal is empty or holds unprintable characters.
    """
    if not principal or not principal.isprintable():
        raise InvalidInputError(
            "a user's principal is a non-empty printable id, as the channel names the user (e.g. slack:T1:U2)"
        )
    return USER_OWNER_PREFIX + principal


class UserTokens:
    """Each user's own tokens, kept in the vault under the user's principal.

    Args:
        vault: The vault holding them.
    """

    def __init__(self, vault: Vault) -> None:
        self._vault = vault

    async def set(self, principal: str, name: str, value: str) -> tuple[SecretInfo, bool]:
        """Store ``principal``'s own ``name`` token, replacing any previous one; whether it was created.

        Raises:
            InvalidInputError: The principal, name or value is not acceptable.
        """
        return await self._vault.set(name, value, owner=user_owner(principal))

    async def get(self, principal: str, name: str) -> str:
        """``principal``'s own ``name`` token; never another user's, never a platform secret of that name.

        Raises:
            SecretNotFoundError: The user has stored no such token.
            SecretUnreadableError: It cannot be decrypted with the master key in use.
        """
        owner = user_owner(principal)
        try:
            return await self._vault.get(name, owner=owner)
        except SecretNotFoundError:
            raise SecretNotFoundError(
                f"user {principal} has no token {name!r} in the vault; store it with "
                f"`botfactory secrets set {name} --user {principal}`"
            ) from None

    async def delete(self, principal: str, name: str) -> bool:
        """Delete ``principal``'s own ``name`` token; whether it existed."""
        return await self._vault.delete(name, owner=user_owner(principal))

    async def list(self, principal: str) -> list[SecretInfo]:
        """``principal``'s own tokens by name; no values."""
        return await self._vault.list(owner=user_owner(principal))
