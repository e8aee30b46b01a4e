"""Knowledge store fixtures: a migrated store on SQLite and on PostgreSQL (see ``database_url``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from botfactory.store import Store


@pytest.fixture
async def sqlite_engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A migrated SQLite database's engine."""
    async with await Store.open(f"sqlite:///{tmp_path / 'botfactory.db'}") as store:
        yield store.engine


@pytest.fixture
async def any_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """A migrated database's engine, once on SQLite and once on PostgreSQL."""
    async with await Store.open(database_url) as store:
        yield store.engine
