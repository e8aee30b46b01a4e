"""``botfactory secrets set|list|delete|rotate-key`` in-process against a temporary BOTFACTORY_HOME.

Every test also checks that the value it stored never appears in stdout or stderr.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from botfactory.cli import main
from botfactory.config import Settings
from botfactory.errors import SecretUnreadableError
from botfactory.identity import MasterKey, Vault, load_master_key
from botfactory.store import SecretStore, Store

pytestmark = pytest.mark.integration

CANARY = "canary-91b2c4-cli-value"


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BOTFACTORY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "200")
    for name in ("BOTFACTORY_MASTER_KEY", "BOTFACTORY_MASTER_KEY_FILE", "BOTFACTORY_CONFIG", "BOTFACTORY_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"


@pytest.fixture
def output(capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> Iterator[list[str]]:
    """Everything the commands of a test printed or logged, checked for the canary at the end."""
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    yield seen
    captured = capsys.readouterr()
    everything = "".join(seen) + captured.out + captured.err + caplog.text
    assert CANARY not in everything


def run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], seen: list[str], *args: str, stdin: str = ""
) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(list(args))
    captured = capsys.readouterr()
    seen.extend([captured.out, captured.err])
    return code, captured.out, captured.err


def read(name: str, *, owner: str = "") -> str:
    """The value as a tool would get it, with the master key in effect."""

    async def get() -> str:
        settings = Settings.load()
        async with await Store.open(settings.resolved_database_url) as store:
            return await Vault(SecretStore(store.engine), load_master_key(settings, create=False)).get(
                name, owner=owner
            )

    return asyncio.run(get())


def test_set_reads_the_value_from_stdin_and_list_never_shows_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], output: list[str], home: Path
) -> None:
    code, out, _ = run(monkeypatch, capsys, output, "secrets", "set", "github_token", stdin=CANARY + "\n")
    assert code == 0 and "secret github_token (platform-wide) created" in out
    assert read("github_token") == CANARY  # the line break echo adds is not part of the value
    assert stat.S_IMODE((home / "master.key").stat().st_mode) == 0o600

    code, out, _ = run(monkeypatch, capsys, output, "secrets", "set", "token", "--owner", "slack:T1:U2", stdin=CANARY)
    assert code == 0 and "of owner 'slack:T1:U2' created" in out
    code, out, _ = run(monkeypatch, capsys, output, "secrets", "set", "github_token", stdin="v2")
    assert code == 0 and "replaced" in out
    assert read("github_token") == "v2" and read("token", owner="slack:T1:U2") == CANARY

    code, out, _ = run(monkeypatch, capsys, output, "secrets", "list", "--json")
    assert code == 0
    rows = json.loads(out)
    key_id = load_master_key(Settings.load()).key_id
    assert [(row["owner"], row["name"], row["key_id"]) for row in rows] == [
        ("", "github_token", key_id),
        ("slack:T1:U2", "token", key_id),
    ]
    assert set(rows[0]) == {"name", "owner", "key_id", "created_at", "updated_at"}

    code, out, _ = run(monkeypatch, capsys, output, "secrets", "list", "--owner", "slack:T1:U2", "--json")
    assert [row["name"] for row in json.loads(out)] == ["token"]
    code, out, _ = run(monkeypatch, capsys, output, "secrets", "list")
    assert code == 0 and "github_token" in out and "(platform)" in out and "slack:T1:U2" in out and key_id in out


def test_set_asks_twice_with_hidden_input_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], output: list[str]
) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    prompts: list[tuple[str, bool]] = []

    def hidden_input(prompt: str = "") -> str:
        prompts.append((prompt, True))
        return CANARY

    monkeypatch.setattr("click.termui.hidden_prompt_func", hidden_input)
    monkeypatch.setattr("sys.stdin", Terminal())
    assert main(["secrets", "set", "github_token"]) == 0
    captured = capsys.readouterr()
    output.extend([captured.out, captured.err])

    assert len(prompts) == 2  # value and confirmation, both through the hidden prompt
    assert read("github_token") == CANARY


def test_set_refuses_an_empty_value(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], output: list[str]
) -> None:
    code, _, err = run(monkeypatch, capsys, output, "secrets", "set", "github_token", stdin="\n")
    assert code == 2 and "cannot be empty" in err
    code, out, _ = run(monkeypatch, capsys, output, "secrets", "list", "--json")
    assert json.loads(out) == []


def test_the_value_cannot_be_given_as_an_argument(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], output: list[str]
) -> None:
    code, _, err = run(monkeypatch, capsys, output, "secrets", "set", "github_token", "some-value", stdin="x")
    assert code == 2 and "unexpected extra argument" in err.lower()
    code, out, _ = run(monkeypatch, capsys, output, "secrets", "set", "--help")
    assert "shell history" in out


def test_list_with_no_secrets_says_how_to_set_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], output: list[str]
) -> None:
    code, out, _ = run(monkeypatch, capsys, output, "secrets", "list")
    assert code == 0 and "botfactory secrets set NAME" in out


def test_delete_removes_the_secret_and_a_missing_name_fails_with_not_found(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], output: list[str]
) -> None:
    run(monkeypatch, capsys, output, "secrets", "set", "github_token", stdin=CANARY)
    run(monkeypatch, capsys, output, "secrets", "set", "github_token", "--owner", "u", stdin=CANARY)

    code, out, _ = run(monkeypatch, capsys, output, "secrets", "delete", "github_token", "-y")
    assert code == 0 and "deleted" in out
    code, out, _ = run(monkeypatch, capsys, output, "secrets", "list", "--json")
    assert [(row["owner"], row["name"]) for row in json.loads(out)] == [("u", "github_token")]

    for confirm in (["-y"], []):
        code, _, err = run(monkeypatch, capsys, output, "secrets", "delete", "github_token", *confirm)
        assert code == 3
        assert "secret_not_found" in err and "no secret 'github_token' to delete" in err and "secrets list" in err


def test_delete_asks_first_and_no_keeps_the_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], output: list[str]
) -> None:
    run(monkeypatch, capsys, output, "secrets", "set", "github_token", stdin=CANARY)

    code, _, err = run(monkeypatch, capsys, output, "secrets", "delete", "github_token", stdin="n\n")
    assert code == 130 and "delete secret github_token" in err
    assert read("github_token") == CANARY

    code, out, _ = run(monkeypatch, capsys, output, "secrets", "delete", "github_token", stdin="y\n")
    assert code == 0 and "deleted" in out


def test_rotate_key_with_a_key_file_keeps_the_old_key_and_secrets_still_read(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], output: list[str], home: Path
) -> None:
    run(monkeypatch, capsys, output, "secrets", "set", "github_token", stdin=CANARY)
    run(monkeypatch, capsys, output, "secrets", "set", "token", "--owner", "u", stdin=CANARY)
    old = load_master_key(Settings.load())

    code, out, _ = run(monkeypatch, capsys, output, "secrets", "rotate-key", "-y")

    assert code == 0
    new = load_master_key(Settings.load())
    assert new.key_id != old.key_id
    assert f"re-encrypted 2 secret(s) with the new master key {new.key_id}" in out
    assert new.encoded() not in out  # a key file's key is never printed
    kept = home / f"master.key.old-{old.key_id}"
    assert MasterKey.parse(kept.read_text(), where="old").key == old.key
    assert stat.S_IMODE(kept.stat().st_mode) == stat.S_IMODE((home / "master.key").stat().st_mode) == 0o600
    assert read("github_token") == CANARY and read("token", owner="u") == CANARY
    code, out, _ = run(monkeypatch, capsys, output, "secrets", "list", "--json")
    assert {row["key_id"] for row in json.loads(out)} == {new.key_id}


def test_rotate_key_with_the_environment_key_prints_the_new_key_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], output: list[str], home: Path
) -> None:
    old = MasterKey.generate()
    monkeypatch.setenv("BOTFACTORY_MASTER_KEY", old.encoded())
    run(monkeypatch, capsys, output, "secrets", "set", "github_token", stdin=CANARY)

    code, out, err = run(monkeypatch, capsys, output, "secrets", "rotate-key", "-y")

    assert code == 0
    new = MasterKey.parse(out, where="stdout")  # stdout is the new key alone, for scripts
    assert "BOTFACTORY_MASTER_KEY" in err and "ONCE" in err and "re-encrypted 1 secret(s)" in err
    assert not (home / "master.key").exists()  # nothing written to disk
    with pytest.raises(SecretUnreadableError, match=f"encrypted with master key {new.key_id}"):
        read("github_token")
    monkeypatch.setenv("BOTFACTORY_MASTER_KEY", new.encoded())
    assert read("github_token") == CANARY


def test_rotate_key_without_a_key_has_nothing_to_rotate(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], output: list[str], home: Path
) -> None:
    code, _, err = run(monkeypatch, capsys, output, "secrets", "rotate-key", "-y")
    assert code == 2 and "does not exist" in err
    assert not (home / "master.key").exists()


def test_rotate_key_asks_first_and_no_changes_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], output: list[str], home: Path
) -> None:
    run(monkeypatch, capsys, output, "secrets", "set", "github_token", stdin=CANARY)
    before = (home / "master.key").read_text()

    code, _, err = run(monkeypatch, capsys, output, "secrets", "rotate-key", stdin="n\n")

    assert code == 130 and "replace master key" in err
    assert (home / "master.key").read_text() == before
    assert read("github_token") == CANARY


@pytest.mark.parametrize(
    ("setup", "args", "expected"),
    [
        ("bad-env", ["secrets", "set", "x"], "BOTFACTORY_MASTER_KEY is not a master key"),
        ("open-file", ["secrets", "set", "x"], "chmod 600"),
        ("other-key", ["secrets", "set", "x"], "use the same master key on every host"),
    ],
)
def test_failures_exit_non_zero_with_a_message_and_no_traceback(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    output: list[str],
    home: Path,
    setup: str,
    args: list[str],
    expected: str,
) -> None:
    if setup == "bad-env":
        monkeypatch.setenv("BOTFACTORY_MASTER_KEY", CANARY)
    else:
        run(monkeypatch, capsys, output, "secrets", "set", "first", stdin=CANARY)
        if setup == "open-file":
            (home / "master.key").chmod(0o644)
        else:
            monkeypatch.setenv("BOTFACTORY_MASTER_KEY", MasterKey.generate().encoded())

    code, _, err = run(monkeypatch, capsys, output, *args, stdin=CANARY)

    assert code == 2 and expected in err and "Traceback" not in err
