"""Schema migrations: Alembic, configured in code, with the scripts shipped inside the package.

``upgrade`` and ``current_revision`` are synchronous, for ``botfactory db upgrade`` and friends;
:meth:`botfactory.store.Store.open` runs the same steps on its async engine's connection.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError

from botfactory.errors import StoreError
from botfactory.store.engine import WRITE_OPTIONS, create_sync_engine, database_error

__all__ = [
    "MIGRATIONS_DIR",
    "alembic_config",
    "check_revision",
    "current_revision",
    "exclusive",
    "head_revision",
    "revision_of",
    "upgrade",
    "upgrade_connection",
]

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
"""Alembic's script location: ``env.py`` and the numbered revisions in ``versions/``."""

# Alembic keeps the running migration in module globals (alembic.context, alembic.op): two
# migrations interleaved in one process, even on different event-loop tasks, corrupt each other.
_ALEMBIC_LOCK = threading.Lock()


@asynccontextmanager
async def exclusive() -> AsyncIterator[None]:
    """Hold the process-wide migration lock without blocking the event loop.

    Wrap :func:`upgrade_connection` in it when it runs on an async connection.
    """
    # Polling instead of acquiring in a worker thread: a cancelled waiter then never ends up
    # holding the lock with nobody to release it.
    while not _ALEMBIC_LOCK.acquire(blocking=False):  # noqa: ASYNC110 - a thread lock has no Event
        await asyncio.sleep(0.01)
    try:
        yield
    finally:
        _ALEMBIC_LOCK.release()


def alembic_config(connection: sa.Connection | None = None) -> Config:
    """An Alembic configuration for botfactory's migrations, optionally bound to ``connection``.

    Use it for Alembic commands the helpers here do not wrap, e.g.
    ``command.revision(alembic_config(), "add x", rev_id="0002")``.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision this version of botfactory knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships 0001
        raise StoreError(f"no migrations found in {MIGRATIONS_DIR}; reinstall botfactory")
    return head


def revision_of(connection: sa.Connection) -> str | None:
    """The revision the database behind ``connection`` is at, or ``None`` if it was never migrated."""
    return MigrationContext.configure(connection).get_current_revision()


def upgrade_connection(connection: sa.Connection, revision: str = "head") -> None:
    """Migrate the database behind ``connection``, inside the caller's transaction.

    Hold :func:`exclusive` (async callers) while it runs; :func:`upgrade` does that itself.

    Raises:
        StoreError: The database is at a revision this botfactory does not know.
    """
    try:
        command.upgrade(alembic_config(connection), revision)
    except CommandError as exc:
        raise StoreError(
            f"cannot migrate the database ({exc}); it may have been migrated by a newer botfactory: upgrade botfactory"
        ) from exc


def check_revision(connection: sa.Connection) -> None:
    """Raise unless the database behind ``connection`` is at the head revision.

    Raises:
        StoreError: The schema is missing or at another revision.
    """
    current, head = revision_of(connection), head_revision()
    if current != head:
        raise StoreError(
            f"the database schema is at revision {current or 'none'}, this botfactory needs {head}; "
            "run `botfactory db upgrade`"
        )


def upgrade(url: str, revision: str = "head") -> str | None:
    """Migrate the database at ``url`` to ``revision``; running it again changes nothing.

    It blocks: call it from the command line or a worker thread, not on an event loop
    (:meth:`botfactory.store.Store.open` migrates by itself).

    Args:
        url: A database URL as accepted by :func:`botfactory.store.engine.normalize_url`.
        revision: Target revision, the newest by default.

    Returns:
        The revision the database is at afterwards.

    Raises:
        ConfigError: The URL is invalid.
        StoreError: The database is unreachable or at an unknown revision.
    """
    engine = create_sync_engine(url)
    try:
        with _ALEMBIC_LOCK, engine.connect() as connection:
            connection = connection.execution_options(**WRITE_OPTIONS)
            with connection.begin():
                before = revision_of(connection)
                upgrade_connection(connection, revision)
                after = revision_of(connection)
    except sa.exc.DBAPIError as exc:
        raise database_error(exc, engine.url, doing="migrating the database") from exc
    finally:
        engine.dispose()
    if before != after:
        logger.info("database=<%s>, from=<%s>, to=<%s> | database migrated", engine.url.database, before, after)
    return after


def current_revision(url: str) -> str | None:
    """The revision the database at ``url`` is at, or ``None`` if it was never migrated.

    Raises:
        ConfigError: The URL is invalid.
        StoreError: The database is unreachable.
    """
    engine = create_sync_engine(url)
    try:
        with engine.connect() as connection:
            return revision_of(connection)
    except sa.exc.DBAPIError as exc:
        raise database_error(exc, engine.url, doing="reading the schema revision") from exc
    finally:
        engine.dispose()
