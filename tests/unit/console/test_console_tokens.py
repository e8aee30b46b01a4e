"""Console login tokens: signed, expiring, bound to the principal; CSRF tokens bound to the login."""

from __future__ import annotations

from botfactory.console._tokens import csrf_token, derive_secret, issue_token, read_token
from botfactory.identity import Principal

KEY = Principal(kind="api_key", key_id="key_0123456789abcdef", bot="support")


def test_a_token_names_its_principal_until_it_expires() -> None:
    secret = derive_secret(b"k" * 32)
    token = issue_token(secret, KEY, now=1000.0, ttl_s=60.0)
    login = read_token(secret, token, now=1059.0)
    assert login is not None and login.principal == KEY and login.expires_at == 1060.0
    assert read_token(secret, token, now=1060.0) is None


def test_a_token_signed_with_another_secret_or_altered_is_refused() -> None:
    secret = derive_secret(b"k" * 32)
    token = issue_token(secret, KEY, now=0.0, ttl_s=60.0)
    assert read_token(derive_secret(b"j" * 32), token, now=1.0) is None
    payload, _, signature = token.partition(".")
    assert read_token(secret, payload + "x." + signature, now=1.0) is None
    assert read_token(secret, "garbage", now=1.0) is None
    assert read_token(secret, "é.é", now=1.0) is None


def test_the_secret_is_stable_for_one_master_key_and_random_without_one() -> None:
    assert derive_secret(b"k" * 32) == derive_secret(b"k" * 32)
    assert derive_secret(None) != derive_secret(None)


def test_a_local_principal_never_comes_from_a_cookie() -> None:
    secret = derive_secret(b"k" * 32)
    token = issue_token(secret, Principal(kind="local"), now=0.0, ttl_s=60.0)
    assert read_token(secret, token, now=1.0) is None


def test_csrf_tokens_differ_per_login() -> None:
    secret = derive_secret(b"k" * 32)
    one, two = issue_token(secret, KEY, now=0, ttl_s=9), issue_token(secret, KEY, now=0, ttl_s=9)
    assert csrf_token(secret, one) != csrf_token(secret, two) != csrf_token(secret, None)
    assert csrf_token(secret, one) == csrf_token(secret, one)
