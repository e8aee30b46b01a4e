"""Running prebuilt statements straight on SQLite's cursor, for the runtime's hot path.

SQLAlchemy's execution machinery costs tens of microseconds per statement, several times what SQLite itself
takes for the runtime's small indexed reads and writes. A :class:`Fast` statement is compiled once for SQLite
(positional ``?`` parameters, literal values bound from the compiled defaults; no expanding ``IN``) and executed on the DBAPI
cursor of the connection's current transaction; on any other database it goes through SQLAlchemy as usual.
JSON parameters are serialized here, as SQLAlchemy's JSON type would (``json.dumps``).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.base import Executable

__all__ = ["Fast", "FastResult"]


class FastResult:
    """Rows of a fast statement as mappings, and the number of rows written."""

    def __init__(self, rows: list[dict[str, Any]], rowcount: int) -> None:
        self.rows = rows
        self.rowcount = rowcount

    def first(self) -> dict[str, Any] | None:
        """The first row, if any."""
        return self.rows[0] if self.rows else None

    def scalar(self) -> Any:
        """The first column of the first row, or ``None``."""
        return next(iter(self.rows[0].values())) if self.rows else None


class Fast:
    """A statement compiled once and run on the raw SQLite cursor (SQLAlchemy elsewhere).

    Args:
        statement: Any SQLAlchemy statement; parameters are its bind parameters by name.
        json: Names of parameters holding JSON values.
    """

    def __init__(self, statement: Executable, *, json: Collection[str] = ()) -> None:
        self.statement = statement
        self._json = frozenset(json)
        self._sql = ""
        self._names: tuple[str, ...] = ()
        self._defaults: dict[str, Any] = {}

    def _compile(self, dialect: sa.Dialect) -> None:
        compiled = self.statement.compile(  # type: ignore[attr-defined]
            dialect=dialect, compile_kwargs={}
        )
        self._names = tuple(compiled.positiontup or ())
        self._defaults = dict(compiled.params)
        self._sql = compiled.string

    def _row(self, parameters: Mapping[str, Any]) -> list[Any]:
        row = []
        for name in self._names:
            value = parameters[name] if name in parameters else self._defaults[name]
            if name in self._json and value is not None:
                value = json.dumps(value)
            row.append(value)
        return row

    def run(self, connection: sa.Connection, parameters: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> FastResult:
        """Execute with one parameter set (or many, for writes) inside ``connection``'s transaction."""
        if connection.dialect.name != "sqlite":
            result = connection.execute(self.statement, parameters)
            rows = [dict(row) for row in result.mappings()] if result.returns_rows else []
            return FastResult(rows, result.rowcount)
        if not self._sql:
            self._compile(connection.dialect)
        dbapi = connection.connection.dbapi_connection
        assert isinstance(dbapi, sqlite3.Connection)
        cursor = dbapi.cursor()
        try:
            if isinstance(parameters, Mapping):
                cursor.execute(self._sql, self._row(parameters))
            else:
                cursor.executemany(self._sql, [self._row(p) for p in parameters])
            if cursor.description is None:
                return FastResult([], cursor.rowcount)
            columns = [column[0] for column in cursor.description]
            rows = [dict(zip(columns, values, strict=True)) for values in cursor.fetchall()]
            return FastResult(rows, cursor.rowcount)
        finally:
            cursor.close()
