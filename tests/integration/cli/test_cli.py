"""The botfactory command, run in-process through ``main(argv)`` against a temporary BOTFACTORY_HOME."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from botfactory.cli import main
from botfactory.store import head_revision

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BOTFACTORY_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"


def test_config_show_json_masks_secrets_and_applies_the_layers(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "botfactory.toml").write_text('port = 9000\ngithub_org = "from-file"\n')
    monkeypatch.setenv("BOTFACTORY_GITHUB_ORG", "from-env")
    monkeypatch.setenv("BOTFACTORY_GITHUB_TOKEN", "ghp_supersecret")
    monkeypatch.setenv("BOTFACTORY_DATABASE_URL", "postgresql://bot:hunter2@db.internal/bf")
    assert main(["config", "show", "--json"]) == 0
    out = capsys.readouterr().out
    data = json.loads(out)
    assert data["port"] == 9000
    assert data["github_org"] == "from-env"
    assert "ghp_supersecret" not in out
    assert "hunter2" not in out
    assert data["database_url"] == "postgresql://bot:***@db.internal/bf"


def test_invalid_settings_exit_non_zero_with_the_key_named(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOTFACTORY_PORT", "not-a-port")
    assert main(["config", "show"]) == 2
    assert "port" in capsys.readouterr().err


def test_db_upgrade_creates_the_database(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    assert main(["db", "upgrade"]) == 0
    assert (home / "botfactory.db").is_file()
    assert f"database at revision {head_revision()}" in capsys.readouterr().out


def test_kb_ingest_then_search(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    docs = tmp_path / "handbook"
    docs.mkdir()
    (docs / "lunch.md").write_text("# Lunch\n\nThe canteen serves ramen every Thursday from 12:00 to 14:00.\n")
    (docs / "parking.md").write_text("# Parking\n\nVisitors park in garage B, level minus two.\n")
    assert main(["kb", "ingest", str(docs), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["added"], report["unchanged"]) == (2, 0)
    assert main(["kb", "search", "where do guests leave their car?", "--json", "-k", "1"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits[0]["source"] == "handbook/parking.md"
    assert main(["kb", "ingest", str(docs), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["unchanged"] == 2


def test_kb_ingest_of_a_missing_path_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kb", "ingest", "/nonexistent/docs"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_bots_list_json_shows_the_reference_bot(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bots", "list", "--json"]) == 0
    bots = json.loads(capsys.readouterr().out)
    assert [b["name"] for b in bots] == ["support"]


def test_models_list_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "list", "--json"]) == 0
    models = {m["name"]: m for m in json.loads(capsys.readouterr().out)}
    assert models["qwen2.5-coder-1.5b-instruct-q4_k_m"]["aliases"] == ["large"]
    assert models["qwen2.5-coder-0.5b-instruct-q4_k_m"]["aliases"] == ["small"]


def test_chat_with_an_explicit_url_and_no_server_fails_clearly(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chat", "support", "-m", "hi", "--url", "http://127.0.0.1:9"]) == 1
    assert "no botfactory server answers at http://127.0.0.1:9" in capsys.readouterr().err


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"]) == 2
    assert "No such command" in capsys.readouterr().err


def test_config_show_text_is_shaped_like_botfactory_toml(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOTFACTORY_GITHUB_TOKEN", "ghp_supersecret")
    assert main(["config", "show"]) == 0
    out = capsys.readouterr().out
    assert "[models.large]" in out
    assert 'model = "qwen2.5-coder-1.5b-instruct-q4_k_m"' in out
    assert "# bots_dir is not set" in out
    assert "ghp_supersecret" not in out


def test_up_on_a_taken_port_fails_before_starting_anything(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["up", "--port", str(port)]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    assert not (home / "botfactory.db").exists()
