"""Memory: knowledge bases (ingest, chunk, embed, search) and the vector index behind them.

Example:
    store = KnowledgeStore(engine)
    kb = KnowledgeBase("support", store, OnnxMiniLMEmbedder())
    await kb.ingest(Path("docs"))
    passages = await kb.search("how do I rotate an API key?")
"""

from __future__ import annotations

from botfactory.memory.chunking import Chunk, chunk_document, document_title
from botfactory.memory.embeddings import Embedder, OnnxMiniLMEmbedder, aembed
from botfactory.memory.index import ExactIndex, VectorIndex
from botfactory.memory.knowledge import IngestReport, KnowledgeBase, Passage, SkippedFile

__all__ = [
    "Chunk",
    "Embedder",
    "ExactIndex",
    "IngestReport",
    "KnowledgeBase",
    "OnnxMiniLMEmbedder",
    "Passage",
    "SkippedFile",
    "VectorIndex",
    "aembed",
    "chunk_document",
    "document_title",
]
