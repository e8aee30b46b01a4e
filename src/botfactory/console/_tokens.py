"""The console's login cookie: a signed, expiring token naming the principal, and the CSRF token derived from it.

A token is ``<payload>.<signature>``: the payload is base64url JSON (the principal and an expiry), the signature
HMAC-SHA256 of the payload under the console's secret. Nothing secret is in the payload (a key's id, never the key),
so the cookie only needs to be unforgeable, not unreadable.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any, Final

from botfactory.identity import Principal

__all__ = ["LoginToken", "csrf_token", "derive_secret", "issue_token", "read_token"]

_CONTEXT: Final = b"botfactory console login v1"
_LOCAL: Final = "local"


@dataclass(frozen=True, kw_only=True)
class LoginToken:
    """A verified login: who, and until when (epoch seconds)."""

    principal: Principal
    expires_at: float


def derive_secret(master_key: bytes | None) -> bytes:
    """The signing secret: derived from the vault's master key (stable across restarts), else random.

    A random secret ends every console login when the process restarts.
    """
    if master_key is None:
        return secrets.token_bytes(32)
    return hmac.new(master_key, _CONTEXT, hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: bytes, payload: str) -> str:
    return _b64(hmac.new(secret, payload.encode("ascii"), hashlib.sha256).digest())


def issue_token(secret: bytes, principal: Principal, *, now: float, ttl_s: float) -> str:
    """A token for ``principal`` that expires ``ttl_s`` seconds from ``now``."""
    data: dict[str, Any] = {
        "kind": principal.kind,
        "key_id": principal.key_id,
        "bot": principal.bot,
        "user_id": principal.user_id,
        "groups": sorted(principal.groups),
        "scopes": sorted(principal.scopes),
        "client_id": principal.client_id,
        "exp": now + ttl_s,
        "nonce": secrets.token_hex(8),
    }
    payload = _b64(json.dumps(data, separators=(",", ":"), sort_keys=True).encode())
    return f"{payload}.{_sign(secret, payload)}"


def read_token(secret: bytes, token: str, *, now: float) -> LoginToken | None:
    """The login a token stands for; ``None`` when it is malformed, forged or expired."""
    payload, dot, signature = token.partition(".")
    if not dot or len(token) > 4096:
        return None
    try:
        expected = _sign(secret, payload)
    except UnicodeEncodeError:
        return None
    if not hmac.compare_digest(expected, signature):
        return None
    try:
        data = json.loads(_unb64(payload))
        expires_at = float(data["exp"])
        principal = Principal(
            kind=data["kind"],
            key_id=data.get("key_id"),
            bot=data.get("bot"),
            user_id=data.get("user_id"),
            groups=frozenset(data.get("groups") or ()),
            scopes=frozenset(data.get("scopes") or ()),
            client_id=data.get("client_id"),
        )
    except (binascii.Error, ValueError, KeyError, TypeError):
        return None
    if principal.kind not in ("api_key", "jwt") or expires_at <= now:
        return None
    return LoginToken(principal=principal, expires_at=expires_at)


def csrf_token(secret: bytes, login: str | None) -> str:
    """The token every form POST must carry: bound to the login cookie (or to local mode without one)."""
    bound = login if login is not None else _LOCAL
    return _b64(hmac.new(secret, b"csrf|" + bound.encode("ascii", "replace"), hashlib.sha256).digest())
