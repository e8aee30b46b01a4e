"""Engines on real databases: SQLite pragmas and files, errors when the database is unreachable."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from botfactory.errors import StoreError
from botfactory.store import Store

pytestmark = pytest.mark.integration


async def test_sqlite_file_and_directory_are_created_with_wal_and_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "bots.db"
    async with await Store.open(f"sqlite:///{path}") as store:
        assert store.dialect_name == "sqlite"
        async with store.engine.connect() as connection:
            pragmas = {
                name: (await connection.exec_driver_sql(f"PRAGMA {name}")).scalar_one()
                for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            }
    assert path.is_file()
    # synchronous: 1 is NORMAL.
    assert pragmas == {"journal_mode": "wal", "synchronous": 1, "foreign_keys": 1, "busy_timeout": 10_000}


async def test_sqlite_enforces_foreign_keys(tmp_path: Path) -> None:
    async with await Store.open(f"sqlite:///{tmp_path / 'fk.db'}") as store:
        await store.ensure_session("s", bot="helper")
        with pytest.raises(sa.exc.IntegrityError):
            async with store.engine.begin() as connection:
                await connection.exec_driver_sql(
                    "INSERT INTO turns (id, session_id, bot, status, started_at) VALUES ('t', 'nope', 'b', 'running', 0)"
                )
        assert await store.list_turns("nope") == []


async def test_sqlite_in_an_unwritable_place_says_what_to_check(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match=r"cannot create the directory .*check BOTFACTORY_HOME"):
        await Store.open(f"sqlite:///{blocker / 'sub' / 'x.db'}")


@pytest.mark.postgres
async def test_unreachable_postgres_says_where_and_what_to_check() -> None:
    # Port 1 on loopback refuses connections immediately.
    with pytest.raises(
        StoreError, match=r"is PostgreSQL running on 127\.0\.0\.1:1 .*BOTFACTORY_DATABASE_URL"
    ) as caught:
        await Store.open("postgresql://postgres:s3cret@127.0.0.1:1/botfactory")
    assert caught.value.retryable is True
    assert "s3cret" not in caught.value.message


@pytest.mark.postgres
async def test_missing_postgres_database_is_named(postgres_database_url: str) -> None:
    url = sa.make_url(postgres_database_url).set(database="botfactory_no_such_db")
    with pytest.raises(StoreError, match="botfactory_no_such_db"):
        await Store.open(url.render_as_string(hide_password=False))
