"""Identity: who is calling, and the secrets the platform holds for them.

Create keys with ``botfactory keys create --bot NAME``; the server turns the secret a request presents into a
:class:`Principal` that channels check with :meth:`Principal.allows_bot`. The :class:`Vault` keeps credentials
encrypted in the store under a master key from :func:`load_master_key` (``botfactory secrets set NAME``).
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
from botfactory.identity.master_key import MasterKey, load_master_key, replace_key_file
from botfactory.identity.vault import SecretInfo, Vault

__all__ = [
    "KEY_PREFIX",
    "LOCAL_PRINCIPAL",
    "ApiKeys",
    "IssuedKey",
    "MasterKey",
    "Principal",
    "PrincipalKind",
    "SecretInfo",
    "Vault",
    "hash_key",
    "load_master_key",
    "new_key_id",
    "new_secret",
    "replace_key_file",
]
