"""Database URLs: what users write, what drivers botfactory picks, and the errors for the rest."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import sqlalchemy as sa

from botfactory.errors import ConfigError, MissingExtraError, StoreError
from botfactory.store import create_engine, normalize_url
from botfactory.store.engine import database_error


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://bot:pw@db.internal:5433/bots", "postgresql+psycopg://bot:pw@db.internal:5433/bots"),
        ("postgresql+psycopg://bot@db/bots", "postgresql+psycopg://bot@db/bots"),
        ("postgres://bot@db/bots", "postgresql+psycopg://bot@db/bots"),
    ],
)
def test_postgres_urls_use_psycopg_with_a_connect_timeout(url: str, expected: str) -> None:
    normalized = normalize_url(url)

    assert normalized.render_as_string(hide_password=False) == f"{expected}?connect_timeout=10"
    assert normalize_url(url, asyncio=False).drivername == "postgresql+psycopg"


def test_postgres_connect_timeout_in_the_url_wins() -> None:
    assert normalize_url("postgresql://db/bots?connect_timeout=2").query["connect_timeout"] == "2"


def test_sqlite_urls_pick_aiosqlite_or_sqlite3_and_create_the_directory(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "botfactory.db"

    assert normalize_url(f"sqlite:///{path}").drivername == "sqlite+aiosqlite"
    assert normalize_url(f"sqlite+aiosqlite:///{path}", asyncio=False).drivername == "sqlite+pysqlite"
    assert normalize_url(f"sqlite:///{path}").database == str(path)
    assert path.parent.is_dir()
    assert not path.exists()


def test_sqlite_home_directory_is_expanded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert normalize_url("sqlite:///~/bf/x.db").database == str(tmp_path / "bf" / "x.db")


def test_in_memory_sqlite_is_left_alone() -> None:
    assert normalize_url("sqlite://").database is None
    assert normalize_url("sqlite:///:memory:").database == ":memory:"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://root@db/bots", "unsupported database 'mysql'.*sqlite:///"),
        ("postgresql+asyncpg://db/bots", "through psycopg, not 'asyncpg'"),
        ("not a url", "cannot parse the database URL"),
    ],
)
def test_unsupported_urls_say_what_to_write(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        create_engine(url)
    assert "BOTFACTORY_DATABASE_URL" in caught.value.message
    assert caught.value.exit_code == 2


def test_postgres_without_psycopg_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> object:
        return None if name == "psycopg" else real_find_spec(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(MissingExtraError, match=r"pip install 'botfactory\[postgres\]'") as caught:
        normalize_url("postgresql://db/bots")
    assert caught.value.extra == "postgres"


def test_driver_errors_keep_only_the_first_line_and_no_password() -> None:
    url = sa.make_url("postgresql+psycopg://bot:hunter2@db.internal:6543/bots")
    driver_error = Exception("duplicate key value\nDETAIL:  Key (text)=(a private message) already exists.")
    error = database_error(sa.exc.OperationalError("INSERT ...", {"text": "x"}, driver_error), url, doing="adding")

    assert isinstance(error, StoreError)
    assert error.message.startswith("adding failed: duplicate key value; is PostgreSQL running on db.internal:6543")
    assert "private message" not in error.message
    assert "hunter2" not in error.message
    assert error.retryable is True
