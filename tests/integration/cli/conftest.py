"""Fixtures of the CLI tests."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from botfactory.memory import KnowledgeBase, OnnxMiniLMEmbedder
from botfactory.server import DEFAULT_KB
from botfactory.store import KnowledgeStore, Store


@pytest.fixture(scope="session")
def seeded_database(tmp_path_factory: pytest.TempPathFactory, embedder: OnnxMiniLMEmbedder) -> Path:
    """A database whose default knowledge base holds one small document, so platforms started on a copy skip
    seeding it with the shipped docs (the CLI tests' bots never search) and start in about a second."""
    root = tmp_path_factory.mktemp("seeded-cli")
    (root / "docs").mkdir()
    (root / "docs" / "note.md").write_text("# Note\n\nThe CLI tests need no documentation.\n")

    async def seed() -> None:
        async with await Store.open(f"sqlite:///{root / 'botfactory.db'}") as store:
            knowledge = KnowledgeBase(DEFAULT_KB, KnowledgeStore(store.engine), embedder)
            assert (await knowledge.ingest(root / "docs")).added == 1

    asyncio.run(seed())
    return root / "botfactory.db"
