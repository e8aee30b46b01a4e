from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from botfactory.store.knowledge import ChunkInput, ChunkRow, KnowledgeStore

pytestmark = pytest.mark.integration


def chunks(*texts: str) -> list[ChunkInput]:
    return [
        ChunkInput(ordinal=i, heading=f"Doc > {i}", text=t, embedding=np.full(4, i, dtype="<f4").tobytes())
        for i, t in enumerate(texts)
    ]


async def test_replace_document_swaps_chunks_atomically(any_engine: AsyncEngine) -> None:
    store = KnowledgeStore(any_engine)
    first = await store.replace_document("kb", "docs/a.md", "A", "sha1", chunks("one", "two"), now=100.0)
    await store.replace_document("kb", "docs/b.md", "B", "sha2", chunks("other"), now=200.0)
    second = await store.replace_document("kb", "docs/a.md", "A", "sha3", chunks("three"), now=300.0)

    assert second != first
    assert await store.document_hashes("kb") == {"docs/a.md": "sha3", "docs/b.md": "sha2"}
    stored = await store.load_embeddings("kb")
    assert len(stored) == 2
    rows = await store.get_chunks([chunk_id for chunk_id, _ in stored][::-1])
    assert [r.text for r in rows] == ["three", "other"]
    assert rows[0] == ChunkRow(id=rows[0].id, source="docs/a.md", heading="Doc > 0", text="three")
    stats = await store.stats("kb")
    assert (stats.documents, stats.chunks, stats.last_ingested_at) == (2, 2, 300.0)


async def test_knowledge_bases_are_separate(any_engine: AsyncEngine) -> None:
    store = KnowledgeStore(any_engine)
    await store.replace_document("one", "docs/a.md", "A", "sha1", chunks("x"))
    await store.replace_document("two", "docs/a.md", "A", "sha2", chunks("y", "z"))
    assert await store.remove_documents("one", ["docs/a.md", "docs/missing.md"]) == 1
    assert await store.document_hashes("one") == {}
    assert (await store.stats("one")).chunks == 0
    assert (await store.stats("two")).chunks == 2
    assert await store.remove_documents("two", []) == 0


async def test_embeddings_round_trip_as_float32(any_engine: AsyncEngine) -> None:
    store = KnowledgeStore(any_engine)
    vector = np.linspace(-1, 1, 384, dtype=np.float32)
    chunk = ChunkInput(ordinal=0, heading="h", text="t", embedding=vector.astype("<f4").tobytes())
    await store.replace_document("kb", "s", "T", "sha", [chunk])
    [(_, blob)] = await store.load_embeddings("kb")
    np.testing.assert_array_equal(np.frombuffer(blob, dtype="<f4"), vector)


async def test_get_chunks_handles_many_ids(any_engine: AsyncEngine) -> None:
    store = KnowledgeStore(any_engine)
    await store.replace_document("kb", "s", "T", "sha", chunks(*(f"text {i}" for i in range(1200))))
    ids = [chunk_id for chunk_id, _ in await store.load_embeddings("kb")]
    rows = await store.get_chunks([*ids, 10**9])
    assert [r.text for r in rows] == [f"text {i}" for i in range(1200)]
    assert (await store.stats("missing")).last_ingested_at is None
