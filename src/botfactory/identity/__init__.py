"""Identity: who is calling. Inbound API keys and the principals they stand for.

Create keys with ``botfactory keys create --bot NAME``; the server turns the secret a request presents into a
:class:`Principal` that channels check with :meth:`Principal.allows_bot`.
"""

from botfactory.identity.api_keys import (
    KEY_PREFIX,
    LOCAL_PRINCIPAL,
    ApiKeys,
    IssuedKey,
    Principal,
    PrincipalKind,
    hash_key,
    new_key_id,
    new_secret,
)

__all__ = [
    "KEY_PREFIX",
    "LOCAL_PRINCIPAL",
    "ApiKeys",
    "IssuedKey",
    "Principal",
    "PrincipalKind",
    "hash_key",
    "new_key_id",
    "new_secret",
]
