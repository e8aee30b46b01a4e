"""Database URLs and engines for the supported backends, and driver errors mapped to ours.

Users write ``sqlite:///path/to/file.db``, ``postgresql://user@host/db`` or
``postgresql+psycopg://...``; the store picks the driver: aiosqlite or psycopg for the async
engine, the stdlib sqlite3 or psycopg for the sync engine that migrations from the CLI use.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from botfactory.errors import ConfigError, StoreError
from botfactory.store import _postgres, _sqlite

__all__ = [
    "WRITE_OPTIONS",
    "begin_write",
    "create_engine",
    "create_sync_engine",
    "database_error",
    "normalize_url",
    "reading",
    "safe_url",
    "writing",
]

WRITE_OPTIONS: Final = {_sqlite.WRITE_OPTION: True}
"""Connection execution options for a transaction that reads and then writes (see ``_sqlite``)."""


@dataclass(frozen=True, kw_only=True)
class _Backend:
    async_driver: str
    sync_driver: str
    accepted_drivers: frozenset[str]
    prepare_url: Callable[[sa.URL], sa.URL]
    configure_engine: Callable[[sa.Engine], None]
    connect_hint: Callable[[sa.URL], str]
    pre_ping: bool
    """Test pooled connections before use: a server may have restarted; a local SQLite file cannot."""


_BACKENDS: Final = {
    "sqlite": _Backend(
        async_driver="aiosqlite",
        sync_driver="pysqlite",
        accepted_drivers=frozenset({"", "aiosqlite", "pysqlite"}),
        prepare_url=_sqlite.prepare_url,
        configure_engine=_sqlite.configure_engine,
        connect_hint=_sqlite.connect_hint,
        pre_ping=False,
    ),
    "postgresql": _Backend(
        async_driver="psycopg",
        sync_driver="psycopg",
        accepted_drivers=frozenset({"", "psycopg", "psycopg_async"}),
        prepare_url=_postgres.prepare_url,
        configure_engine=_postgres.configure_engine,
        connect_hint=_postgres.connect_hint,
        pre_ping=True,
    ),
}
_ALIASES: Final = {"postgres": "postgresql"}
_EXAMPLES = "sqlite:///path/to/botfactory.db or postgresql://user@host:5432/dbname"


def _parse(url: str) -> tuple[_Backend, sa.URL]:
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise ConfigError(
            f"cannot parse the database URL {url.split('@')[-1]!r}; BOTFACTORY_DATABASE_URL must look like {_EXAMPLES}"
        ) from None
    name, _, driver = parsed.drivername.partition("+")
    name = _ALIASES.get(name, name)
    backend = _BACKENDS.get(name)
    if backend is None:
        raise ConfigError(
            f"unsupported database {parsed.drivername!r}; botfactory runs on SQLite or PostgreSQL: "
            f"set BOTFACTORY_DATABASE_URL to {_EXAMPLES}"
        )
    if driver not in backend.accepted_drivers:
        raise ConfigError(
            f"botfactory talks to {name} through {backend.async_driver}, not {driver!r}; "
            f"write the URL as {name}://... in BOTFACTORY_DATABASE_URL"
        )
    return backend, parsed.set(drivername=name)


def normalize_url(url: str, *, asyncio: bool = True) -> sa.URL:
    """The SQLAlchemy URL, with the driver botfactory uses, for a user-written database URL.

    Args:
        url: ``sqlite:///...``, ``postgresql://...`` or ``postgresql+psycopg://...``.
        asyncio: Pick the async driver (aiosqlite) rather than the sync one (sqlite3).

    Raises:
        ConfigError: The URL cannot be parsed or names an unsupported database or driver.
        MissingExtraError: The URL needs an optional extra that is not installed.
        StoreError: The SQLite file's directory cannot be created.
    """
    backend, parsed = _parse(url)
    driver = backend.async_driver if asyncio else backend.sync_driver
    return backend.prepare_url(parsed.set(drivername=f"{parsed.drivername}+{driver}"))


def create_engine(url: str) -> AsyncEngine:
    """An async engine for ``url`` with botfactory's per-connection settings applied.

    Creating the engine does not connect; the first query does.
    """
    backend, _ = _parse(url)
    engine = create_async_engine(normalize_url(url), pool_pre_ping=backend.pre_ping)
    backend.configure_engine(engine.sync_engine)
    return engine


@asynccontextmanager
async def begin_write(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A transaction for work that reads and then writes, e.g. ``max(seq) + 1`` or claiming a job.

    Use it instead of ``engine.begin()`` for such work. On SQLite it begins with
    ``BEGIN IMMEDIATE``, taking the write lock before the first read, so the read cannot go
    stale; a plain ``BEGIN`` would fail with ``database is locked`` when another writer commits
    in between. On PostgreSQL it is an ordinary transaction: lock rows with ``FOR UPDATE``.
    """
    async with engine.connect() as connection:
        await connection.execution_options(**WRITE_OPTIONS)
        async with connection.begin():
            yield connection


@asynccontextmanager
async def reading(engine: AsyncEngine, doing: str) -> AsyncIterator[AsyncConnection]:
    """A connection for reads; a driver failure becomes a :class:`StoreError` saying what was being done."""
    try:
        async with engine.connect() as connection:
            yield connection
    except sa.exc.DBAPIError as exc:
        raise database_error(exc, engine.url, doing=doing) from exc


@asynccontextmanager
async def writing(engine: AsyncEngine, doing: str) -> AsyncIterator[AsyncConnection]:
    """A :func:`begin_write` transaction; a driver failure becomes a :class:`StoreError` saying what was being done.

    Constraint violations (``IntegrityError``) pass through: callers turn them into errors about their own
    arguments (a duplicate id, an unknown session).
    """
    try:
        async with begin_write(engine) as connection:
            yield connection
    except sa.exc.IntegrityError:
        raise
    except sa.exc.DBAPIError as exc:
        raise database_error(exc, engine.url, doing=doing) from exc


def create_sync_engine(url: str) -> sa.Engine:
    """A sync engine for ``url``, for migrations run from the command line."""
    backend, _ = _parse(url)
    engine = sa.create_engine(normalize_url(url, asyncio=False), pool_pre_ping=backend.pre_ping)
    backend.configure_engine(engine)
    return engine


def safe_url(url: sa.URL) -> str:
    """``url`` without its password, for messages and logs."""
    return url.render_as_string(hide_password=True)


def database_error(exc: sa.exc.DBAPIError, url: sa.URL, *, doing: str) -> StoreError:
    """Map a driver error to a :class:`StoreError` that says what to check.

    Only the first line of the driver's message is kept: later lines can quote row values,
    which may be user text.
    """
    lines = str(exc.orig if exc.orig is not None else exc).strip().splitlines()
    reason = lines[0] if lines else type(exc.orig or exc).__name__
    backend = _BACKENDS[_ALIASES.get(url.get_backend_name(), url.get_backend_name())]
    transient = isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError)
    return StoreError(f"{doing} failed: {reason}; {backend.connect_hint(url)}", retryable=transient)
