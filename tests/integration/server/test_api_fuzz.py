"""Fuzz the served OpenAPI surface with schemathesis against a real server.

Valid and invalid requests alike: never a 5xx, every status and body as documented. Requests that are refused
(4xx) leave nothing behind in the store.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import hypothesis.errors
import pytest
import schemathesis
import sqlalchemy as sa
from live import LiveServer
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from botfactory.config import Settings
from botfactory.memory import OnnxMiniLMEmbedder
from botfactory.store import create_sync_engine

pytestmark = pytest.mark.integration

_TABLES = ("sessions", "messages", "inbox", "turns", "outbox")
_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory, seeded_database: Path, embedder: OnnxMiniLMEmbedder
) -> Iterator[LiveServer]:
    home = tmp_path_factory.mktemp("fuzz-home")
    shutil.copy(seeded_database, home / "botfactory.db")
    settings = Settings.load(
        home=home,
        runtime={"invoke_timeout_s": 5.0, "max_attempts": 1, "shutdown_grace_s": 0.5},
    )
    with LiveServer(settings, embedder=embedder) as server:
        yield server


@pytest.fixture(scope="module")
def api_schema(live: LiveServer) -> Any:
    document = httpx.get(f"{live.url}/openapi.json").json()
    loaded = schemathesis.openapi.from_dict(document)
    loaded.config.update(base_url=live.url)
    return loaded


def _counts(live: LiveServer) -> dict[str, int]:
    engine = create_sync_engine(live.settings.resolved_database_url)
    try:
        with engine.connect() as connection:
            return {t: connection.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one() for t in _TABLES}
    finally:
        engine.dispose()


def _bounded(case: Any) -> None:
    """A followed event stream never ends: fuzz it in its finite mode."""
    if case.operation.path.endswith("/events"):
        case.query = {**(case.query or {}), "follow": "false"}


_SETTINGS = hypothesis.settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(hypothesis.HealthCheck),
    phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    database=None,
)


def _fuzz(schema: Any, mode: GenerationMode, check: Callable[[Any], None]) -> list[str]:
    """Run ``check`` on generated cases of every operation; the failures, one line per operation."""
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @_SETTINGS
        @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
        def run(case: Any) -> None:
            _bounded(case)
            check(case)

        try:
            run()
        except hypothesis.errors.Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE, f"no valid request for {operation.path}"  # no input to break
        except Exception as exc:  # every operation is fuzzed; all failures are reported together
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:2000]}")
    return failures


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_answers_as_documented_and_never_with_a_5xx(api_schema: Any, mode: GenerationMode) -> None:
    failures = _fuzz(api_schema, mode, lambda case: case.call_and_validate(checks=_CHECKS, timeout=30))
    assert not failures, "\n\n".join(failures)


def test_rejected_requests_store_nothing(api_schema: Any, live: LiveServer) -> None:
    def check(case: Any) -> None:
        before = _counts(live)
        response = case.call(timeout=30)
        assert response.status_code < 500, response.text
        if response.status_code >= 400:
            assert _counts(live) == before, f"{response.status_code} {response.text[:200]} but rows were written"

    failures = _fuzz(api_schema, GenerationMode.NEGATIVE, check)
    assert not failures, "\n\n".join(failures)
