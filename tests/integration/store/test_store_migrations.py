"""Migrations: the migrated database is exactly schema.py, upgrades are idempotent and checked."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from botfactory.errors import StoreError
from botfactory.store import Store, current_revision, head_revision, upgrade
from botfactory.store.engine import create_sync_engine
from botfactory.store.schema import metadata

pytestmark = pytest.mark.integration


def _diffs(connection: sa.Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True, "compare_server_default": True})
    return list(compare_metadata(context, metadata))


async def test_migrated_database_matches_schema_module(store: Store) -> None:
    async with store.engine.connect() as connection:
        diffs = await connection.run_sync(_diffs)
        tables = set(await connection.run_sync(lambda c: sa.inspect(c).get_table_names()))

    assert diffs == []
    assert tables == set(metadata.tables) | {"alembic_version"}


async def test_upgrade_is_idempotent_and_reports_the_revision(database_url: str) -> None:
    assert await asyncio.to_thread(current_revision, database_url) is None

    assert await asyncio.to_thread(upgrade, database_url) == head_revision()
    assert await asyncio.to_thread(upgrade, database_url) == head_revision()

    assert await asyncio.to_thread(current_revision, database_url) == head_revision() == "0008"
    async with await Store.open(database_url, migrate=False) as store:
        await store.ensure_session("after-cli-upgrade", bot="helper")
        assert [s.id for s in await store.list_sessions()] == ["after-cli-upgrade"]


async def test_open_without_migrate_refuses_an_unmigrated_database(database_url: str) -> None:
    with pytest.raises(StoreError, match=r"schema is at revision none, this botfactory needs 0008.*db upgrade"):
        await Store.open(database_url, migrate=False)
    assert await asyncio.to_thread(current_revision, database_url) is None


async def test_workers_starting_together_migrate_once(database_url: str) -> None:
    stores = await asyncio.gather(*(Store.open(database_url) for _ in range(4)))
    try:
        await stores[0].ensure_session("s", bot="helper")
        assert [s.id for s in await stores[3].list_sessions()] == ["s"]
    finally:
        for store in stores:
            await store.close()
    assert await asyncio.to_thread(current_revision, database_url) == "0008"


async def test_database_from_a_newer_botfactory_is_refused(database_url: str) -> None:
    await asyncio.to_thread(upgrade, database_url)
    engine = create_sync_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    finally:
        engine.dispose()

    with pytest.raises(StoreError, match="newer botfactory"):
        await Store.open(database_url)
    with pytest.raises(StoreError, match="at revision 9999"):
        await Store.open(database_url, migrate=False)
