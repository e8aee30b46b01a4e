"""Fixtures shared by the integration tests: real SQLite files and a real PostgreSQL server.

``database_url`` runs a test once on a fresh SQLite file and once on a fresh PostgreSQL schema.
PostgreSQL is reached through ``BOTFACTORY_TEST_POSTGRES_URL`` (default: the local server with
trust auth); each test session creates its own database there and drops it at the end. When the
server is unreachable the PostgreSQL variants are skipped and the reason says so.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from botfactory.memory import OnnxMiniLMEmbedder
from botfactory.store import Store

PG_ADMIN_URL = os.environ.get("BOTFACTORY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


class TickingClock:
    """A deterministic clock: every reading is one second after the previous one."""

    def __init__(self, start: float = 1_700_000_000.0, step: float = 1.0) -> None:
        self.now = start
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


@pytest.fixture(scope="session")
def postgres_database_url() -> Iterator[str]:
    """URL of an empty PostgreSQL database created for this test session and dropped after it."""
    psycopg = pytest.importorskip("psycopg", reason="the postgres extra is not installed")
    from psycopg import sql

    admin = sa.make_url(PG_ADMIN_URL)
    where = f"{admin.host}:{admin.port or 5432}"
    try:
        connection = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.skip(
            f"PostgreSQL is not reachable on {where} ({str(exc).strip().splitlines()[0]}); start PostgreSQL or set BOTFACTORY_TEST_POSTGRES_URL to run these tests"
        )
    name = f"botfactory_test_{secrets.token_hex(6)}"
    with connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield admin.set(database=name).render_as_string(hide_password=False)
        finally:
            connection.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def postgres_url(postgres_database_url: str) -> str:
    """URL of a fresh, empty schema in the session's database: tables of one test never meet another's."""
    import psycopg
    from psycopg import sql

    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(postgres_database_url, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    url = sa.make_url(postgres_database_url).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """URL of a SQLite file that does not exist yet, in a directory that does not exist yet."""
    return f"sqlite:///{tmp_path / 'data' / 'botfactory.db'}"


@pytest.fixture(
    params=[
        pytest.param("sqlite_url", id="sqlite", marks=pytest.mark.integration),
        pytest.param("postgres_url", id="postgresql", marks=[pytest.mark.integration, pytest.mark.postgres]),
    ]
)
def database_url(request: pytest.FixtureRequest) -> str:
    """An empty database, once on SQLite and once on PostgreSQL."""
    return str(request.getfixturevalue(request.param))


@pytest.fixture(scope="session")
def models_cache() -> Path:
    """Where the real local model files are assembled once and reused across test runs.

    ``$BOTFACTORY_TEST_MODELS``, default ``~/.cache/botfactory-test-models``; files are verified by sha256 before
    use, so a cached file is as good as a fresh one.
    """
    path = Path(os.environ.get("BOTFACTORY_TEST_MODELS") or Path.home() / ".cache" / "botfactory-test-models")
    path.expanduser().mkdir(parents=True, exist_ok=True)
    return path.expanduser()


@pytest.fixture(scope="session")
def embedder() -> OnnxMiniLMEmbedder:
    """The real local embedding model, loaded once per test session."""
    return OnnxMiniLMEmbedder()


@pytest.fixture
def clock() -> TickingClock:
    """The clock the ``store`` fixture uses."""
    return TickingClock()


@pytest.fixture
async def store(database_url: str, clock: TickingClock) -> AsyncIterator[Store]:
    """A migrated store on ``database_url`` with a :class:`TickingClock`."""
    async with await Store.open(database_url, clock=clock) as opened:
        yield opened


@pytest.fixture(scope="session")
def _span_exporter() -> Any:
    """One in-memory span exporter behind the process's tracer provider (OpenTelemetry allows setting it once).

    The provider is the one botfactory installs (:func:`~botfactory.observability.span_router`), so tests record
    spans as the platform does; the exporter gets them as recorded, before redaction.
    """
    from opentelemetry import trace
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from botfactory.observability import span_router

    exporter = InMemorySpanExporter()
    span_router()  # installs botfactory's provider unless a platform started earlier did
    trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(exporter))  # type: ignore[attr-defined]
    return exporter


@pytest.fixture
def spans(_span_exporter: Any) -> Iterator[Any]:
    """The spans finished during the test (``spans.get_finished_spans()``); tracing is on from the first use."""
    _span_exporter.clear()
    yield _span_exporter
    _span_exporter.clear()
