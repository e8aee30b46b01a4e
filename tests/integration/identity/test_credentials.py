"""Credentials resolved at call time on a real vault (SQLite and PostgreSQL) and a real token endpoint on 127.0.0.1.

The central promise: a user's own token is used only for that user's calls. Users A and B store tokens under the
same name beside a platform secret of that name too; each call gets its own user's value or a ``CredentialError``,
never another's. The declarations are the gateway's real ``CredentialRef`` objects. Every test also checks that no
stored value or issued token appears in any log record.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from botfactory.cli import main
from botfactory.config import OAuthClientConfig, Settings
from botfactory.errors import CredentialError
from botfactory.gateway import CredentialProvider, CredentialRef
from botfactory.identity import ClientCredentialsTokens, Credentials, MasterKey, UserTokens, Vault, load_master_key
from botfactory.store import SecretStore, Store
from botfactory.testing import serve_app

pytestmark = pytest.mark.integration

ALICE, BOB, CAROL = "slack:T1:UALICE", "slack:T1:UBOB", "slack:T1:UCAROL"
PLATFORM_GITHUB = "platform-github-" + secrets.token_hex(8)
ALICE_GITHUB = "alice-github-" + secrets.token_hex(8)
BOB_GITHUB = "bob-github-" + secrets.token_hex(8)
CRM_SECRET = "crm-secret-" + secrets.token_hex(8)
VALUES = (PLATFORM_GITHUB, ALICE_GITHUB, BOB_GITHUB, CRM_SECRET)

GITHUB_AS_USER = CredentialRef(name="github", kind="user_token")
GITHUB_PLATFORM = CredentialRef(name="github", kind="secret", secret="github_token")
CRM = CredentialRef(name="crm", kind="oauth_client", secret="crm")


class TokenEndpoint:
    """A client-credentials token endpoint that accepts one client (HTTP Basic) and counts its requests."""

    def __init__(self) -> None:
        self.url = ""
        self.hits = 0
        self.issued: list[str] = []

    def app(self) -> Starlette:
        async def token(request: Request) -> Response:
            self.hits += 1
            pair = base64.b64decode(request.headers.get("authorization", "Basic ").removeprefix("Basic ")).decode()
            if pair != f"crm-app:{CRM_SECRET}":
                return JSONResponse({"error": "invalid_client"}, status_code=401)
            value = f"crm-token-{secrets.token_hex(8)}"
            self.issued.append(value)
            return JSONResponse({"access_token": value, "token_type": "Bearer", "expires_in": 3600})

        return Starlette(routes=[Route("/token", token, methods=["POST"])])


@pytest.fixture
async def endpoint() -> AsyncIterator[TokenEndpoint]:
    served = TokenEndpoint()
    async with serve_app(served.app()) as base_url:
        served.url = f"{base_url}/token"
        yield served


@pytest.fixture(autouse=True)
def no_values_logged(caplog: pytest.LogCaptureFixture, endpoint: TokenEndpoint) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    yield
    records = [*caplog.get_records("setup"), *caplog.get_records("call"), *caplog.records]
    logged = "\n".join(f"{record.getMessage()} {record.args!r} {record.exc_text or ''}" for record in records)
    for value in (*VALUES, *endpoint.issued):
        assert value not in logged


@pytest.fixture
async def vault(store: Store) -> Vault:
    vault = Vault(SecretStore(store.engine), MasterKey.generate())
    await vault.set("github", PLATFORM_GITHUB)
    await vault.set("github_token", PLATFORM_GITHUB)
    await vault.set("oauth/crm", CRM_SECRET)
    users = UserTokens(vault)
    await users.set(ALICE, "github", ALICE_GITHUB)
    await users.set(BOB, "github", BOB_GITHUB)
    return vault


@pytest.fixture
async def oauth(vault: Vault, endpoint: TokenEndpoint) -> AsyncIterator[ClientCredentialsTokens]:
    tokens = ClientCredentialsTokens({"crm": OAuthClientConfig(token_url=endpoint.url, client_id="crm-app")}, vault)
    yield tokens
    await tokens.aclose()


@pytest.fixture
def credentials(vault: Vault, oauth: ClientCredentialsTokens) -> Credentials:
    return Credentials(vault, oauth)


async def test_each_user_gets_their_own_token_of_a_shared_name(credentials: Credentials) -> None:
    for_alice = await credentials.resolve([GITHUB_AS_USER], user_id=ALICE)
    for_bob = await credentials.resolve([GITHUB_AS_USER], user_id=BOB)

    assert for_alice == {"github": ALICE_GITHUB}
    assert for_bob == {"github": BOB_GITHUB}


async def test_concurrent_calls_for_two_users_never_cross(credentials: Credentials) -> None:
    users = [ALICE, BOB] * 25

    resolved = await asyncio.gather(*(credentials.resolve([GITHUB_AS_USER], user_id=user) for user in users))

    expected = {ALICE: ALICE_GITHUB, BOB: BOB_GITHUB}
    assert [values["github"] for values in resolved] == [expected[user] for user in users]


async def test_a_user_without_a_token_gets_an_error_never_another_users_or_the_platform_secret(
    credentials: Credentials,
) -> None:
    with pytest.raises(CredentialError) as caught:
        await credentials.resolve([GITHUB_AS_USER], user_id=CAROL)

    message = caught.value.message
    assert f"`botfactory secrets set github --user {CAROL}`" in message
    assert all(value not in message for value in VALUES)


async def test_a_call_for_no_user_cannot_use_a_user_token(credentials: Credentials) -> None:
    with pytest.raises(CredentialError, match="needs the calling user's own token, and this call is made for no user"):
        await credentials.resolve([GITHUB_AS_USER], user_id=None)


async def test_a_deleted_user_token_is_no_longer_used(credentials: Credentials, vault: Vault) -> None:
    assert await UserTokens(vault).delete(ALICE, "github")

    with pytest.raises(CredentialError, match=f"user {ALICE} has not stored one"):
        await credentials.resolve([GITHUB_AS_USER], user_id=ALICE)
    assert await credentials.resolve([GITHUB_AS_USER], user_id=BOB) == {"github": BOB_GITHUB}


async def test_platform_secrets_and_oauth_tokens_are_the_same_for_every_user(
    credentials: Credentials, endpoint: TokenEndpoint
) -> None:
    for_alice = await credentials.resolve([GITHUB_PLATFORM, CRM], user_id=ALICE)
    for_nobody = await credentials.resolve([GITHUB_PLATFORM, CRM], user_id=None)

    assert for_alice == for_nobody == {"github": PLATFORM_GITHUB, "crm": endpoint.issued[0]}
    assert endpoint.hits == 1


async def test_a_refused_credential_is_forgotten_so_the_next_call_gets_a_fresh_one(
    credentials: Credentials, vault: Vault, endpoint: TokenEndpoint
) -> None:
    first = await credentials.resolve([GITHUB_PLATFORM, CRM], user_id=ALICE)
    await vault.set("github_token", "rotated-" + PLATFORM_GITHUB)

    assert await credentials.resolve([GITHUB_PLATFORM, CRM], user_id=ALICE) == first  # both cached
    # The service refused them (HTTP 401): the OAuth token is dropped, so a retry can succeed at once.
    assert credentials.forget([GITHUB_PLATFORM, CRM], first, user_id=ALICE) is True
    again = await credentials.resolve([GITHUB_PLATFORM, CRM], user_id=ALICE)

    assert again == {"github": "rotated-" + PLATFORM_GITHUB, "crm": endpoint.issued[1]}
    assert endpoint.hits == 2
    # A second caller refused with the old token must not throw away the new one.
    assert credentials.forget([CRM], first, user_id=ALICE) is False
    assert await credentials.resolve([CRM], user_id=ALICE) == {"crm": endpoint.issued[1]}
    assert endpoint.hits == 2


async def test_one_tool_may_declare_every_kind(credentials: Credentials, endpoint: TokenEndpoint) -> None:
    refs = [
        CredentialRef(name="mine", kind="user_token", secret="github"),
        CredentialRef(name="org", kind="secret", secret="github_token"),
        CRM,
    ]

    values = await credentials.resolve(refs, user_id=BOB)

    assert values == {"mine": BOB_GITHUB, "org": PLATFORM_GITHUB, "crm": endpoint.issued[0]}


async def test_a_missing_platform_secret_says_how_to_store_it(credentials: Credentials) -> None:
    with pytest.raises(CredentialError, match=r"platform secret 'jira_token'.*`botfactory secrets set jira_token`"):
        await credentials.resolve([CredentialRef(name="jira", secret="jira_token")], user_id=ALICE)


async def test_a_user_token_is_not_a_platform_secret(credentials: Credentials, vault: Vault) -> None:
    await UserTokens(vault).set(ALICE, "calendar", "alice-calendar-value")

    with pytest.raises(CredentialError, match="platform secret 'calendar'"):
        await credentials.resolve([CredentialRef(name="calendar", kind="secret")], user_id=ALICE)


async def test_oauth_credentials_without_oauth_clients_say_what_to_configure(vault: Vault) -> None:
    with pytest.raises(CredentialError, match=r"add \[oauth_clients.crm\]"):
        await Credentials(vault).resolve([CRM], user_id=ALICE)


async def test_credentials_is_the_gateways_credential_provider(credentials: Credentials) -> None:
    provider: CredentialProvider = credentials

    assert await provider.resolve([GITHUB_AS_USER], user_id=BOB) == {"github": BOB_GITHUB}


async def test_user_tokens_lists_only_that_users_tokens(vault: Vault) -> None:
    listed = await UserTokens(vault).list(ALICE)

    assert [(info.owner, info.name) for info in listed] == [(f"user:{ALICE}", "github")]


# The CLI: `--user PRINCIPAL` is `--owner user:PRINCIPAL`. `main` runs its own event loop, so these tests are sync.


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BOTFACTORY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "200")
    for name in ("BOTFACTORY_MASTER_KEY", "BOTFACTORY_MASTER_KEY_FILE", "BOTFACTORY_CONFIG", "BOTFACTORY_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"


def _cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str, stdin: str = "") -> Any:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(list(args))
    captured = capsys.readouterr()
    assert all(value not in captured.out + captured.err for value in VALUES)
    return code, captured.out, captured.err


def _resolve_for(user_id: str | None) -> dict[str, str]:
    async def resolve() -> dict[str, str]:
        settings = Settings.load()
        async with await Store.open(settings.resolved_database_url) as store:
            vault = Vault(SecretStore(store.engine), load_master_key(settings, create=False))
            return await Credentials(vault).resolve([GITHUB_AS_USER], user_id=user_id)

    return asyncio.run(resolve())


def test_cli_user_stores_a_token_only_that_user_gets(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _cli(monkeypatch, capsys, "secrets", "set", "github", "--user", ALICE, stdin=ALICE_GITHUB + "\n")
    assert code == 0 and f"of owner 'user:{ALICE}' created" in out
    code, _, _ = _cli(monkeypatch, capsys, "secrets", "set", "github", stdin=PLATFORM_GITHUB)
    assert code == 0

    assert _resolve_for(ALICE) == {"github": ALICE_GITHUB}
    with pytest.raises(CredentialError, match=f"--user {BOB}"):
        _resolve_for(BOB)

    code, out, _ = _cli(monkeypatch, capsys, "secrets", "list", "--user", ALICE, "--json")
    assert code == 0 and [(row["owner"], row["name"]) for row in json.loads(out)] == [(f"user:{ALICE}", "github")]

    code, _, _ = _cli(monkeypatch, capsys, "secrets", "delete", "github", "--user", ALICE, "-y")
    assert code == 0
    code, out, _ = _cli(monkeypatch, capsys, "secrets", "list", "--json")
    assert [(row["owner"], row["name"]) for row in json.loads(out)] == [("", "github")]


def test_cli_refuses_owner_and_user_together(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in (["set", "github"], ["list"], ["delete", "github", "-y"]):
        code, _, err = _cli(
            monkeypatch, capsys, "secrets", *command, "--owner", "x", "--user", ALICE, stdin=ALICE_GITHUB
        )
        assert code == 2 and "either --owner or --user" in err
