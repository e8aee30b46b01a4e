"""``botfactory keys create|list|revoke`` in-process against a temporary BOTFACTORY_HOME, and `up`'s host rule."""

from __future__ import annotations

import asyncio
import io
import json
import re
from pathlib import Path

import pytest

from botfactory.cli import main
from botfactory.config import Settings
from botfactory.errors import UnauthenticatedError
from botfactory.identity import ApiKeys
from botfactory.store import ApiKeyStore, Store

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BOTFACTORY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"


def create(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    assert main(["keys", "create", *args, "--json"]) == 0
    data: dict[str, object] = json.loads(capsys.readouterr().out)
    return data


def authenticate(secret: str) -> str | None:
    """The key id the secret authenticates as on the configured database, as a server would check it."""

    async def check() -> str | None:
        async with await Store.open(Settings.load().resolved_database_url) as store:
            return (await ApiKeys(ApiKeyStore(store.engine)).authenticate(secret)).key_id

    return asyncio.run(check())


def test_create_json_prints_the_secret_once_with_its_id_and_scope(capsys: pytest.CaptureFixture[str]) -> None:
    data = create(capsys, "--bot", "support", "--name", "ci pipeline")

    assert set(data) == {"id", "key", "prefix", "bot", "name", "created_at"}
    assert re.fullmatch(r"bf_[A-Za-z0-9_-]{43}", str(data["key"]))
    assert str(data["key"]).startswith(str(data["prefix"]))
    assert (data["bot"], data["name"]) == ("support", "ci pipeline")
    assert authenticate(str(data["key"])) == data["id"]


def test_create_text_shows_the_secret_and_says_it_cannot_be_shown_again(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "create", "--all-bots"]) == 0
    out = capsys.readouterr().out

    secret = re.search(r"bf_[A-Za-z0-9_-]{43}", out)
    assert secret is not None
    assert "for every bot" in out
    assert "cannot be shown again" in out
    key_id = re.search(r"key_[0-9a-f]{16}", out)
    assert key_id is not None and authenticate(secret.group()) == key_id.group()


@pytest.mark.parametrize("args", [[], ["--bot", "support", "--all-bots"]], ids=["neither", "both"])
def test_create_needs_exactly_one_of_bot_or_all_bots(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    assert main(["keys", "create", *args]) == 2
    assert "--bot NAME, or pass --all-bots" in capsys.readouterr().err


def test_create_with_an_over_long_bot_name_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "create", "--bot", "b" * 200]) == 2
    assert "the bot name must be 1 to 128 characters" in capsys.readouterr().err


def test_list_shows_prefix_scope_and_use_but_never_the_secret(capsys: pytest.CaptureFixture[str]) -> None:
    first = create(capsys, "--bot", "support", "--name", "first")
    second = create(capsys, "--all-bots", "--name", "second")
    assert authenticate(str(first["key"])) == first["id"]  # records a last use

    assert main(["keys", "list", "--json"]) == 0
    out = capsys.readouterr().out
    rows = json.loads(out)
    assert [row["id"] for row in rows] == [first["id"], second["id"]]
    assert set(rows[0]) == {"id", "prefix", "bot", "name", "created_at", "last_used_at", "revoked_at"}
    assert [row["bot"] for row in rows] == ["support", None]
    assert rows[0]["last_used_at"] is not None and rows[1]["last_used_at"] is None

    assert main(["keys", "list"]) == 0
    text = capsys.readouterr().out
    assert str(first["id"]) in text and str(first["prefix"]) in text and "(all bots)" in text and "never" in text
    for secret in (first["key"], second["key"]):
        assert str(secret) not in out + text
        assert str(secret)[len(str(first["prefix"])) :] not in out + text


def test_list_with_no_keys_says_how_to_create_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "list"]) == 0
    assert "botfactory keys create --bot NAME" in capsys.readouterr().out
    assert main(["keys", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_revoke_stops_the_key_and_list_all_shows_it_revoked(capsys: pytest.CaptureFixture[str]) -> None:
    kept = create(capsys, "--bot", "support")
    revoked = create(capsys, "--bot", "support")

    assert main(["keys", "revoke", str(revoked["id"]), "-y"]) == 0
    assert f"API key {revoked['id']}" in capsys.readouterr().out
    with pytest.raises(UnauthenticatedError, match="revoked"):
        authenticate(str(revoked["key"]))
    assert authenticate(str(kept["key"])) == kept["id"]

    assert main(["keys", "list", "--json"]) == 0
    assert [row["id"] for row in json.loads(capsys.readouterr().out)] == [kept["id"]]
    assert main(["keys", "list", "--all", "--json"]) == 0
    rows = {row["id"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows[revoked["id"]]["revoked_at"] is not None and rows[kept["id"]]["revoked_at"] is None
    assert main(["keys", "list", "--all"]) == 0
    assert "revoked" in capsys.readouterr().out

    assert main(["keys", "revoke", str(revoked["id"]), "-y"]) == 0
    assert "was already revoked" in capsys.readouterr().out


def test_revoke_asks_first_and_no_leaves_the_key_valid(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    issued = create(capsys, "--bot", "support")
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))

    assert main(["keys", "revoke", str(issued["id"])]) == 130
    assert "revoke API key" in capsys.readouterr().err
    assert authenticate(str(issued["key"])) == issued["id"]


@pytest.mark.parametrize("confirm", [["-y"], []], ids=["yes", "asking"])
def test_revoke_of_an_unknown_id_fails_with_not_found(capsys: pytest.CaptureFixture[str], confirm: list[str]) -> None:
    assert main(["keys", "revoke", "key_0000000000000000", *confirm]) == 3
    err = capsys.readouterr().err
    assert "api_key_not_found" in err and "no API key 'key_0000000000000000'" in err
    assert "keys list --all" in err


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10"])
def test_up_refuses_a_host_other_machines_reach(
    capsys: pytest.CaptureFixture[str], home: Path, monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    assert main(["up", "--host", host]) == 2
    err = capsys.readouterr().err
    assert "local development mode" in err and "botfactory serve" in err and "keys create" in err
    assert not (home / "botfactory.db").exists()  # refused before anything started

    monkeypatch.setenv("BOTFACTORY_HOST", host)
    assert main(["up"]) == 2
