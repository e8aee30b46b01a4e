"""SQLite specifics: the file's directory, per-connection pragmas and explicit transactions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa

from botfactory.errors import StoreError

__all__ = ["BUSY_TIMEOUT_MS", "WRITE_OPTION", "configure_engine", "connect_hint", "prepare_url"]

BUSY_TIMEOUT_MS = 10_000
"""How long a connection waits for another writer before failing with ``database is locked``."""

WRITE_OPTION = "botfactory_sqlite_begin_immediate"
"""Execution option that makes the next transaction on a connection ``BEGIN IMMEDIATE``."""

_PRAGMAS = (
    f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}",
    # WAL lets readers run while one writer commits; NORMAL is durable across application
    # crashes in WAL mode and only risks the last transactions on power loss.
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA foreign_keys = ON",
)


def _is_memory(url: sa.URL) -> bool:
    return url.database in (None, "", ":memory:") or (url.database or "").startswith("file::memory:")


def prepare_url(url: sa.URL) -> sa.URL:
    """Expand ``~`` in the file path and create the file's directory.

    Raises:
        StoreError: The directory cannot be created.
    """
    if _is_memory(url):
        return url
    path = Path(url.database or "").expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"cannot create the directory {path.parent} for the SQLite database ({exc.strerror}); "
            "check BOTFACTORY_HOME or BOTFACTORY_DATABASE_URL"
        ) from exc
    return url.set(database=str(path))


def configure_engine(engine: sa.Engine) -> None:
    """Set the pragmas on every new connection and let SQLAlchemy, not the driver, issue ``BEGIN``.

    The stdlib driver only begins a transaction before a write, so two writers could both read
    ``max(seq)`` before either takes the write lock. Writers instead open their transaction with
    ``BEGIN IMMEDIATE`` (execution option :data:`WRITE_OPTION`), which takes the write lock first
    and makes read-then-write atomic; readers use a plain deferred ``BEGIN``.
    """
    sa.event.listen(engine, "connect", _on_connect)
    sa.event.listen(engine, "begin", _on_begin)


def _on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Driver-level autocommit: transactions are begun only by _on_begin below.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        for pragma in _PRAGMAS:
            cursor.execute(pragma)
    finally:
        cursor.close()


def _on_begin(connection: sa.Connection) -> None:
    immediate = connection.get_execution_options().get(WRITE_OPTION, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def connect_hint(url: sa.URL) -> str:
    """What to check when the database file cannot be opened."""
    return f"check that {url.database} is a writable SQLite file, or set BOTFACTORY_DATABASE_URL"
