"""Persistence of knowledge bases: documents, their chunks and the chunks' embeddings.

Plain SQLAlchemy Core over the ``kb_documents`` and ``kb_chunks`` tables, so the same code runs
on SQLite and PostgreSQL. Chunks are deleted explicitly rather than through ``ON DELETE CASCADE``
because SQLite enforces foreign keys only when a connection asks for it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from botfactory.errors import StoreError
from botfactory.store.engine import begin_write
from botfactory.store.schema import kb_chunks, kb_documents

__all__ = ["ChunkInput", "ChunkRow", "KnowledgeStats", "KnowledgeStore"]

# Keeps IN (...) lists under SQLite's bound-parameter limit.
_ID_BATCH = 500


@dataclass(frozen=True, kw_only=True)
class ChunkInput:
    """A chunk to store; ``embedding`` is its vector as little-endian float32 bytes."""

    ordinal: int
    heading: str
    text: str
    embedding: bytes


@dataclass(frozen=True, kw_only=True)
class ChunkRow:
    """A stored chunk with the source of its document."""

    id: int
    source: str
    heading: str
    text: str


@dataclass(frozen=True, kw_only=True)
class KnowledgeStats:
    """Size of one knowledge base."""

    documents: int
    chunks: int
    last_ingested_at: float | None


class KnowledgeStore:
    """Reads and writes the documents and chunks of knowledge bases.

    Args:
        engine: An async engine on SQLite or PostgreSQL whose schema includes the kb tables.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def replace_document(
        self, kb: str, source: str, title: str, sha256: str, chunks: Sequence[ChunkInput], *, now: float | None = None
    ) -> int:
        """Store a document and its chunks in one transaction, replacing any previous version.

        Returns:
            The new document id.

        Raises:
            StoreError: The database failed; the previous version is left in place.
        """
        try:
            async with begin_write(self._engine) as conn:
                await self._delete(conn, kb, [source])
                inserted = await conn.execute(
                    kb_documents.insert()
                    .values(
                        kb=kb,
                        source=source,
                        title=title,
                        sha256=sha256,
                        ingested_at=time.time() if now is None else now,
                    )
                    .returning(kb_documents.c.id)
                )
                document_id = int(inserted.scalar_one())
                if chunks:
                    await conn.execute(
                        kb_chunks.insert(),
                        [
                            {
                                "document_id": document_id,
                                "kb": kb,
                                "ordinal": c.ordinal,
                                "heading": c.heading[:512],
                                "text": c.text,
                                "embedding": c.embedding,
                            }
                            for c in chunks
                        ],
                    )
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot store document {source!r} of knowledge base {kb!r}: {exc}") from exc
        return document_id

    async def document_hashes(self, kb: str) -> dict[str, str]:
        """``{source: sha256}`` of every document in ``kb``."""
        query = sa.select(kb_documents.c.source, kb_documents.c.sha256).where(kb_documents.c.kb == kb)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return {row.source: row.sha256 for row in rows}

    async def remove_documents(self, kb: str, sources: Sequence[str]) -> int:
        """Delete documents of ``kb`` and their chunks; returns how many documents were removed."""
        if not sources:
            return 0
        async with begin_write(self._engine) as conn:
            return await self._delete(conn, kb, sources)

    async def load_embeddings(self, kb: str) -> list[tuple[int, bytes]]:
        """``(chunk id, embedding bytes)`` of every chunk in ``kb``, to rebuild a vector index."""
        query = sa.select(kb_chunks.c.id, kb_chunks.c.embedding).where(kb_chunks.c.kb == kb).order_by(kb_chunks.c.id)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [(int(row.id), bytes(row.embedding)) for row in rows]

    async def get_chunks(self, ids: Sequence[int]) -> list[ChunkRow]:
        """The chunks with ``ids``, in the order given; ids that no longer exist are left out."""
        found: dict[int, ChunkRow] = {}
        async with self._engine.connect() as conn:
            for start in range(0, len(ids), _ID_BATCH):
                query = (
                    sa.select(kb_chunks.c.id, kb_documents.c.source, kb_chunks.c.heading, kb_chunks.c.text)
                    .join(kb_documents, kb_documents.c.id == kb_chunks.c.document_id)
                    .where(kb_chunks.c.id.in_(ids[start : start + _ID_BATCH]))
                )
                for row in await conn.execute(query):
                    found[int(row.id)] = ChunkRow(id=int(row.id), source=row.source, heading=row.heading, text=row.text)
        return [found[i] for i in ids if i in found]

    async def stats(self, kb: str) -> KnowledgeStats:
        """How many documents and chunks ``kb`` holds and when it last changed."""
        docs = sa.select(sa.func.count(), sa.func.max(kb_documents.c.ingested_at)).where(kb_documents.c.kb == kb)
        chunks = sa.select(sa.func.count()).select_from(kb_chunks).where(kb_chunks.c.kb == kb)
        async with self._engine.connect() as conn:
            doc_count, last = (await conn.execute(docs)).one()
            chunk_count = (await conn.execute(chunks)).scalar_one()
        return KnowledgeStats(documents=int(doc_count), chunks=int(chunk_count), last_ingested_at=last)

    @staticmethod
    async def _delete(conn: AsyncConnection, kb: str, sources: Sequence[str]) -> int:
        removed = 0
        for start in range(0, len(sources), _ID_BATCH):
            batch = list(sources[start : start + _ID_BATCH])
            doc_ids = sa.select(kb_documents.c.id).where(kb_documents.c.kb == kb, kb_documents.c.source.in_(batch))
            await conn.execute(kb_chunks.delete().where(kb_chunks.c.document_id.in_(doc_ids)))
            result = await conn.execute(
                kb_documents.delete().where(kb_documents.c.kb == kb, kb_documents.c.source.in_(batch))
            )
            removed += result.rowcount
        return removed
