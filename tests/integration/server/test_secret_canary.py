"""A secret canary: a tool's credential value must appear nowhere but in the tool's own hands.

A full run through the real platform: the value sits in the vault, the gateway injects it into a tool that uses it
(and, carelessly, echoes it back in its result and in an error), then the whole record of the run is searched —
every span attribute and event, every log line at DEBUG, every audit row, every request the model was sent, and
every row of every table in the store. Zero hits.
"""

from __future__ import annotations

import logging
import shutil
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from botfactory.config import Settings
from botfactory.identity import Vault, load_master_key
from botfactory.memory import OnnxMiniLMEmbedder
from botfactory.server import Platform
from botfactory.store import SecretStore, Store, schema
from botfactory.testing import ScriptedModel, call, scripted_inference

pytestmark = pytest.mark.integration

CANARY = "canary-7d41f0c2e9b8a6d3-do-not-leak"

API_BOT = '''
from botfactory.agents import Agent, Bot, ToolContext, tool
from botfactory.errors import ToolError
from botfactory.gateway import CredentialRef

USED: list[bool] = []


@tool(credentials=[CredentialRef(name="api", secret="status_api_token")])
def service_status(service: str, context: ToolContext) -> dict[str, str]:
    """The status of a service, from the status API.

    Args:
        service: The service's name.
    """
    token = context.credentials["api"]
    USED.append(token == "CANARY")
    if service == "broken":
        raise ToolError(f"status API refused token {token}")
    return {"service": service, "status": "degraded", "debug": f"called with Bearer {token}"}


bot = Bot(name="status", agent=Agent(name="status", instructions="You report service status.", model="large",
          tools=[service_status]))
'''


@pytest.fixture
async def status(
    tmp_path: Path, seeded_database: Path, embedder: OnnxMiniLMEmbedder, scripted: dict[str, ScriptedModel]
) -> AsyncIterator[Platform]:
    bots_dir = tmp_path / "bots"
    bots_dir.mkdir()
    (bots_dir / "status.py").write_text(textwrap.dedent(API_BOT).replace("CANARY", CANARY))
    shutil.copy(seeded_database, tmp_path / "botfactory.db")
    settings = Settings.load(home=tmp_path, github_org="example-org", bots_dir=bots_dir)
    async with await Store.open(settings.resolved_database_url) as store:
        await Vault(SecretStore(store.engine), load_master_key(settings)).set("status_api_token", CANARY)
    started = await Platform.start(settings, inference=scripted_inference(scripted), embedder=embedder)
    try:
        yield started
    finally:
        await started.aclose()


def span_text(span: Any) -> str:
    parts = [span.name, repr(dict(span.attributes or {}))]
    parts += [f"{event.name} {dict(event.attributes or {})}" for event in span.events]
    return "\n".join(parts)


async def store_text(platform: Platform) -> str:
    """Every row of every table, as text."""
    chunks: list[str] = []
    async with platform.store.engine.connect() as connection:
        for table in schema.metadata.sorted_tables:
            if table.name == "secrets":
                continue  # ciphertext only; the canary's plaintext cannot be in it
            for row in (await connection.execute(sa.select(table))).all():
                chunks.append(repr(tuple(row)))
    return "\n".join(chunks)


async def test_the_credential_value_never_leaves_the_tool(
    status: Platform,
    scripted: dict[str, ScriptedModel],
    spans: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    scripted["large"].script = [
        call("service_status", service="checkout"),
        call("service_status", service="broken"),
        "checkout is degraded",
    ]

    result = await status.runtime.invoke("status", session_id="canary-1", text="how is checkout?", user_id="u1")

    assert result.status == "completed" and result.reply == "checkout is degraded"
    module: Any = __import__("sys").modules["botfactory_user_bots.status"]
    assert module.USED == [True, True]  # the tool really received the value, twice

    seen_by_model = [m.content or "" for request in scripted["large"].requests for m in request.messages]
    assert any("Bearer ***" in text for text in seen_by_model)  # the echo was scrubbed, not dropped
    assert any("status API refused token ***" in text for text in seen_by_model)
    assert not [text for text in seen_by_model if CANARY in text]

    finished = spans.get_finished_spans()
    assert any(s.name == "execute_tool service_status" for s in finished)
    assert not [s.name for s in finished if CANARY in span_text(s)]

    assert not [r.getMessage() for r in caplog.records if CANARY in r.getMessage() or CANARY in str(r.args)]
    assert CANARY not in caplog.text

    audit = status.engine.gateway.audit
    assert audit is not None
    await audit.flush()
    stored = await store_text(status)
    assert "service_status" in stored  # the search covered the audit rows and steps
    assert CANARY not in stored
