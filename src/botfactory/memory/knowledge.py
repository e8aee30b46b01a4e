"""Knowledge bases: ingest a folder of Markdown and text files, then search it by meaning.

Ingest is incremental: a file whose sha256 is unchanged is skipped, a changed file has its chunks
replaced in one transaction, and a file gone from an ingested folder leaves the knowledge base.
Search embeds the query, takes the nearest chunks from an in-memory index (built from the store
on first use), and gives a light boost to passages containing the query's words.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from botfactory.errors import InvalidInputError, KnowledgeError
from botfactory.memory.chunking import chunk_document, document_title
from botfactory.memory.embeddings import Embedder, aembed
from botfactory.memory.index import ExactIndex, VectorIndex
from botfactory.store import ChunkInput, KnowledgeStats, KnowledgeStore

__all__ = ["SUFFIXES", "IngestReport", "KnowledgeBase", "Passage", "SkippedFile"]

logger = logging.getLogger(__name__)

#: File name endings ingested from a folder (case-insensitive).
SUFFIXES = frozenset({".md", ".markdown", ".txt"})
_KEYWORD_BOOST = 0.1
_CANDIDATES = 4
_WORD = re.compile(r"[\w-]{3,}")
_STOPWORDS = frozenset(
    {"the", "and", "for", "with", "that", "this", "from", "what", "how", "who", "why", "when", "where", "which"}
    | {"are", "was", "were", "can", "does", "did", "you", "your", "our", "about", "into", "have", "has", "not"}
)

Progress = Callable[[int, int], None]


@dataclass(frozen=True, kw_only=True)
class Passage:
    """A search hit: the cited file, its section and the passage text."""

    source: str
    heading: str
    text: str
    score: float


@dataclass(frozen=True, kw_only=True)
class SkippedFile:
    """A file ingest could not use, and why."""

    source: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class IngestReport:
    """What one ingest changed; ``chunks`` counts the chunks written."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    chunks: int = 0
    skipped: tuple[SkippedFile, ...] = field(default=())


class KnowledgeBase:
    """A named, searchable collection of documents.

    Args:
        name: The knowledge base's name in the store.
        store: Where documents, chunks and embeddings are kept.
        embedder: The model that embeds chunks and queries; changing it needs ``ingest(force=True)``.
        max_chars: Chunk size in characters.
        overlap: Overlap between consecutive chunks in characters.
    """

    def __init__(
        self, name: str, store: KnowledgeStore, embedder: Embedder, *, max_chars: int = 600, overlap: int = 100
    ) -> None:
        self.name = name
        self._store = store
        self._embedder = embedder
        self._max_chars = max_chars
        self._overlap = overlap
        self._index: VectorIndex | None = None
        self._lock = asyncio.Lock()

    @property
    def embedder(self) -> Embedder:
        """The model that embeds this knowledge base's chunks and queries (shareable: it holds the weights)."""
        return self._embedder

    async def ingest(self, path: Path, *, force: bool = False, progress: Progress | None = None) -> IngestReport:
        """Bring the knowledge base in line with a folder (recursively) or a single file.

        Sources are recorded relative to the folder's parent, e.g. ``docs/vault/rotate-api-keys.md``
        for ``docs/``. Unreadable, binary and empty files are reported in ``skipped``.

        Args:
            path: A folder of ``.md``/``.markdown``/``.txt`` files, or one file.
            force: Re-embed files even when their content is unchanged.
            progress: Called with ``(files done, files total)`` as ingest advances.

        Raises:
            KnowledgeError: ``path`` does not exist.
            StoreError: The database failed.
        """
        sources, prefix = await asyncio.to_thread(_plan, path)

        known = await self._store.document_hashes(self.name)
        counts = {"added": 0, "updated": 0, "unchanged": 0, "chunks": 0}
        skipped: list[SkippedFile] = []
        kept: set[str] = set()
        total = len(sources)
        if progress:
            progress(0, total)
        for done, (file, source) in enumerate(sources.items(), start=1):
            outcome = await self._ingest_file(file, source, known.get(source), force)
            if isinstance(outcome, SkippedFile):
                skipped.append(outcome)
                logger.warning("kb=<%s>, source=<%s>, reason=<%s> | file skipped", self.name, source, outcome.reason)
            else:
                kind, chunk_count = outcome
                counts[kind] += 1
                counts["chunks"] += chunk_count
                kept.add(source)
            if progress:
                progress(done, total)

        gone = [s for s in known if s not in kept and (s.startswith(prefix) if prefix else s in sources.values())]
        removed = await self._store.remove_documents(self.name, gone)
        if removed:
            self._index = None
        report = IngestReport(removed=removed, skipped=tuple(skipped), **counts)
        logger.info("kb=<%s>, report=<%s> | ingest finished", self.name, report)
        return report

    async def search(self, query: str, k: int = 5) -> list[Passage]:
        """The ``k`` passages that best answer ``query``, best first.

        Raises:
            InvalidInputError: ``query`` is empty or ``k`` is not positive.
            KnowledgeError: The stored vectors do not match the embedder.
        """
        if not query.strip():
            raise InvalidInputError("the search query is empty")
        if k < 1:
            raise InvalidInputError("k must be at least 1")
        index = await self._load_index()
        if len(index) == 0:
            return []
        vector = (await aembed(self._embedder, [query]))[0]
        hits = index.search(vector, k * _CANDIDATES)
        rows = await self._store.get_chunks([chunk_id for chunk_id, _ in hits])
        scores = dict(hits)
        words = _keywords(query)
        passages = [
            Passage(
                source=row.source,
                heading=row.heading,
                text=row.text,
                score=scores[row.id] + _KEYWORD_BOOST * _keyword_overlap(words, f"{row.heading}\n{row.text}"),
            )
            for row in rows
        ]
        passages.sort(key=lambda p: p.score, reverse=True)
        return passages[:k]

    async def stats(self) -> KnowledgeStats:
        """How many documents and chunks the knowledge base holds."""
        return await self._store.stats(self.name)

    async def _ingest_file(
        self, file: Path, source: str, known_sha: str | None, force: bool
    ) -> tuple[str, int] | SkippedFile:
        try:
            data = await asyncio.to_thread(file.read_bytes)
        except OSError as exc:
            return SkippedFile(source=source, reason=f"unreadable: {exc.strerror or exc}")
        sha = hashlib.sha256(data).hexdigest()
        if sha == known_sha and not force:
            return ("unchanged", 0)
        if b"\x00" in data:
            return SkippedFile(source=source, reason="binary file")
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            return SkippedFile(source=source, reason="not UTF-8 text")
        chunks = chunk_document(text, fallback_title=file.stem, max_chars=self._max_chars, overlap=self._overlap)
        if not chunks:
            return SkippedFile(source=source, reason="empty")
        vectors = await aembed(self._embedder, [f"{c.heading}\n{c.text}" for c in chunks])
        if vectors.shape != (len(chunks), self._embedder.dimensions):
            raise KnowledgeError(f"the embedder returned vectors of shape {vectors.shape} for {len(chunks)} chunks")
        rows = [
            ChunkInput(ordinal=c.ordinal, heading=c.heading, text=c.text, embedding=v.astype("<f4").tobytes())
            for c, v in zip(chunks, vectors, strict=True)
        ]
        title = document_title(text, file.stem)
        await self._store.replace_document(self.name, source, title[:512], sha, rows)
        self._index = None  # after every write, so a failed ingest never leaves a stale index behind
        return ("added" if known_sha is None else "updated", len(rows))

    async def _load_index(self) -> VectorIndex:
        async with self._lock:
            if self._index is None:
                self._index = await self._build_index()
            return self._index

    async def _build_index(self) -> VectorIndex:
        dims = self._embedder.dimensions
        stored = await self._store.load_embeddings(self.name)
        index = ExactIndex(dims)
        if stored:
            if any(len(blob) != dims * 4 for _, blob in stored):
                raise KnowledgeError(
                    f"knowledge base {self.name!r} was embedded with another model: re-ingest it with force=True"
                )
            matrix = np.frombuffer(b"".join(blob for _, blob in stored), dtype="<f4").reshape(len(stored), dims)
            index.add([chunk_id for chunk_id, _ in stored], matrix.astype(np.float32))
        logger.debug("kb=<%s>, chunks=<%d> | vector index built", self.name, len(index))
        return index


def _plan(path: Path) -> tuple[dict[Path, str], str | None]:
    """The files to ingest with their sources, and the source prefix a folder owns (None for a file)."""
    path = path.expanduser()
    if path.is_dir():
        return {f: f"{path.name}/{f.relative_to(path).as_posix()}" for f in _find_files(path)}, f"{path.name}/"
    if path.is_file():
        return {path: path.name}, None
    raise KnowledgeError(f"cannot ingest {path}: no such file or folder")


def _find_files(folder: Path) -> list[Path]:
    """Text files under ``folder``, sorted, leaving out hidden files and folders (.git, .obsidian)."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        and p.is_file()
    )


def _keywords(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS}


def _keyword_overlap(words: set[str], text: str) -> float:
    """Share of the query's keywords that occur in ``text``, from 0 to 1."""
    if not words:
        return 0.0
    return len(words & _keywords(text)) / len(words)
