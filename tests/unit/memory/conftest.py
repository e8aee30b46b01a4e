from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from botfactory.memory.embeddings import OnnxMiniLMEmbedder
from botfactory.store import create_engine
from botfactory.store.schema import metadata


class HashingEmbedder:
    """A deterministic bag-of-words embedder: texts sharing words get similar vectors."""

    def __init__(self, dimensions: int = 64, *, flat: bool = False) -> None:
        self.dimensions = dimensions
        self.flat = flat  # every text gets the same vector, so only the keyword boost ranks
        self.calls: list[list[str]] = []

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        self.calls.append(list(texts))
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        for row, text in enumerate(texts):
            words = ["same"] if self.flat else re.findall(r"\w+", text.lower())
            for word in words:
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dimensions] += 1.0
            out[row] /= max(float(np.linalg.norm(out[row])), 1e-9)
        return out


@pytest.fixture(scope="session")
def embedder() -> OnnxMiniLMEmbedder:
    return OnnxMiniLMEmbedder()


@pytest.fixture
def hashing_embedder() -> HashingEmbedder:
    return HashingEmbedder()


@pytest.fixture
def make_embedder() -> type[HashingEmbedder]:
    return HashingEmbedder


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'kb.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield engine
    await engine.dispose()
