from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from botfactory.memory.embeddings import OnnxMiniLMEmbedder
from botfactory.memory.knowledge import KnowledgeBase
from botfactory.store.knowledge import KnowledgeStore

pytestmark = pytest.mark.integration

DOCS = {
    "vault/rotate-api-keys.md": """# Rotate API keys

API keys should be rotated every 90 days or immediately after a suspected leak.

## Steps

1. Open Settings > Security > API keys.
2. Click "Generate new key" and copy it to the secrets vault.
3. Update every service that uses the old key, then revoke the old key.
""",
    "onboarding/laptop-setup.md": """# Laptop setup for new hires

New employees receive a laptop on their first day. Install the VPN client, enrol the device
in mobile device management and enable full-disk encryption before connecting to the office network.
""",
    "billing/refunds.md": """# Refund policy

Customers may request a refund within 30 days of purchase. Refunds are paid back to the original
payment method within five business days; annual plans are refunded pro rata.
""",
    "ops/on-call.txt": """The on-call engineer is paged by the alerting system when production is down.
Acknowledge the page within five minutes, open an incident channel and post status updates every 30 minutes.
""",
}


def write_docs(root: Path) -> Path:
    docs = root / "docs"
    for name, text in DOCS.items():
        (docs / name).parent.mkdir(parents=True, exist_ok=True)
        (docs / name).write_text(text, encoding="utf-8")
    return docs


@pytest.fixture
def kb(sqlite_engine: AsyncEngine, embedder: OnnxMiniLMEmbedder) -> KnowledgeBase:
    return KnowledgeBase("support", KnowledgeStore(sqlite_engine), embedder)


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("How do I replace a leaked access token?", "docs/vault/rotate-api-keys.md"),
        ("Can I get my money back after buying?", "docs/billing/refunds.md"),
        ("What must a new employee do with their computer on day one?", "docs/onboarding/laptop-setup.md"),
        ("Who responds when the site goes down at night?", "docs/ops/on-call.txt"),
    ],
)
async def test_paraphrased_questions_find_the_right_file(
    tmp_path: Path, kb: KnowledgeBase, question: str, expected: str
) -> None:
    report = await kb.ingest(write_docs(tmp_path))
    assert (report.added, report.skipped) == (4, ())
    hits = await kb.search(question, k=3)
    assert hits[0].source == expected
    assert hits[0].score > hits[1].score


async def test_citations_carry_heading_and_text(tmp_path: Path, kb: KnowledgeBase) -> None:
    await kb.ingest(write_docs(tmp_path))
    [hit] = await kb.search("steps to generate a new API key", k=1)
    assert hit.heading == "Rotate API keys > Steps"
    assert "Generate new key" in hit.text


async def test_reingest_replaces_changed_removes_deleted_skips_unchanged(
    tmp_path: Path, sqlite_engine: AsyncEngine, embedder: OnnxMiniLMEmbedder
) -> None:
    docs = write_docs(tmp_path)
    kb = KnowledgeBase("support", KnowledgeStore(sqlite_engine), embedder)
    await kb.ingest(docs)
    assert (await kb.search("refund within 30 days", k=1))[0].source == "docs/billing/refunds.md"

    (docs / "billing/refunds.md").write_text(
        "# Refund policy\n\nAll sales are final; we offer store credit instead of refunds.\n", encoding="utf-8"
    )
    (docs / "ops/on-call.txt").unlink()
    report = await kb.ingest(docs)

    assert (report.added, report.updated, report.unchanged, report.removed) == (0, 1, 2, 1)
    # A fresh instance reads everything back from the SQLite file.
    reopened = KnowledgeBase("support", KnowledgeStore(sqlite_engine), embedder)
    texts = [p.text for p in await reopened.search("refund within 30 days of purchase", k=5)]
    assert not any("30 days" in t for t in texts)
    assert any("store credit" in t for t in texts)
    sources = {p.source for p in await reopened.search("on-call engineer paged", k=5)}
    assert "docs/ops/on-call.txt" not in sources
    stats = await reopened.stats()
    assert (stats.documents, stats.chunks) == (3, 4)
