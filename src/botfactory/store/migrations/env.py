"""Alembic environment: runs migrations on the connection that :mod:`botfactory.store.migrate` passes in.

There is no ``alembic.ini``; use ``botfactory db upgrade`` or the functions in
``botfactory.store.migrate``. New revisions are numbered (``--rev-id 0002``), append-only, and
written by hand with ``op`` calls so that they never change when ``schema.py`` does.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from botfactory.store.schema import metadata

# Any constant works as long as every botfactory process uses the same one.
_PG_MIGRATION_LOCK = 0x626F7466  # "botf"


def _run(connection: sa.Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, compare_type=True)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Workers that start together must not both create the tables: the lock is held
            # until the caller commits, and the second one then sees the first one's revision.
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
        context.run_migrations()


def _main() -> None:
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, sa.Connection):
        raise RuntimeError("run migrations through botfactory.store.migrate (botfactory db upgrade), not alembic")
    _run(connection)


_main()
