"""Identity: who is calling, and the secrets the platform holds for them.

Create keys with ``botfactory keys create --bot NAME``; the server turns the secret a request presents into a
:class:`Principal` that channels check with :meth:`Principal.allows_bot`; with ``[oidc]`` set, the
:class:`OidcVerifier` does the same for JWT bearer tokens from an OpenID Connect issuer. The :class:`Vault` keeps
credentials encrypted in the store under a master key from :func:`load_master_key` (``botfactory secrets set NAME``);
:class:`Credentials` resolves the credentials a tool declares at call time: platform secrets, OAuth client-credentials
tokens (:class:`ClientCredentialsTokens`) and each user's own tokens (:class:`UserTokens`).
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
from botfactory.identity.credentials import CredentialRequest, Credentials
from botfactory.identity.master_key import MasterKey, load_master_key, replace_key_file
from botfactory.identity.oauth import ClientCredentialsTokens
from botfactory.identity.oidc import JWT_SHAPE, OidcVerifier, oidc_user_id
from botfactory.identity.user_tokens import UserTokens, user_owner
from botfactory.identity.vault import SecretInfo, Vault

__all__ = [
    "JWT_SHAPE",
    "KEY_PREFIX",
    "LOCAL_PRINCIPAL",
    "ApiKeys",
    "ClientCredentialsTokens",
    "CredentialRequest",
    "Credentials",
    "IssuedKey",
    "MasterKey",
    "OidcVerifier",
    "Principal",
    "PrincipalKind",
    "SecretInfo",
    "UserTokens",
    "Vault",
    "hash_key",
    "load_master_key",
    "new_key_id",
    "new_secret",
    "oidc_user_id",
    "replace_key_file",
    "user_owner",
]
