"""PostgreSQL specifics: the psycopg extra, a bounded connect timeout and helpful hints."""

from __future__ import annotations

import importlib.util

import sqlalchemy as sa

from botfactory.errors import MissingExtraError

__all__ = ["CONNECT_TIMEOUT_S", "configure_engine", "connect_hint", "prepare_url"]

CONNECT_TIMEOUT_S = 10
"""Seconds to wait for the server, so a wrong host fails fast instead of hanging for minutes."""


def prepare_url(url: sa.URL) -> sa.URL:
    """Check that psycopg is installed and bound the connect timeout unless the URL sets one.

    Raises:
        MissingExtraError: psycopg is not installed.
    """
    if importlib.util.find_spec("psycopg") is None:
        raise MissingExtraError("postgres", "a PostgreSQL BOTFACTORY_DATABASE_URL")
    if "connect_timeout" in url.query:
        return url
    return url.update_query_dict({"connect_timeout": str(CONNECT_TIMEOUT_S)})


def configure_engine(engine: sa.Engine) -> None:
    """Nothing to set per connection: PostgreSQL's defaults (READ COMMITTED, real BEGIN) fit."""


def connect_hint(url: sa.URL) -> str:
    """What to check when the server cannot be reached."""
    where = f"{url.host or 'localhost'}:{url.port or 5432}"
    return f"is PostgreSQL running on {where} and does database {url.database!r} exist? check BOTFACTORY_DATABASE_URL"
