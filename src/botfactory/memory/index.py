"""The in-process vector index behind knowledge-base search.

The index lives in memory and is rebuilt from the store when a knowledge base is first searched;
the store keeps the vectors, so nothing here is persisted. ``bench/bench_knowledge_search.py``
compares exact NumPy search with sqlite-vec and HNSW indexes (usearch, hnswlib) at 100k x 384;
exact search won on simplicity at equal recall, see ``BENCHMARKS.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

__all__ = ["ExactIndex", "VectorIndex"]

_MIN_CAPACITY = 1024


@runtime_checkable
class VectorIndex(Protocol):
    """Nearest-neighbour search over normalized vectors, scored by cosine similarity.

    Implement this to plug in another index (an ANN library, pgvector); ids are the chunk ids
    of the store.
    """

    def add(self, ids: Sequence[int], vectors: npt.NDArray[np.float32]) -> None:
        """Add or replace the vectors of ``ids`` (one row of ``vectors`` per id)."""
        ...

    def remove(self, ids: Sequence[int]) -> None:
        """Forget ``ids``; unknown ids are ignored."""
        ...

    def search(self, vector: npt.NDArray[np.float32], k: int) -> list[tuple[int, float]]:
        """The ``k`` ids most similar to ``vector``, best first, with their cosine similarity."""
        ...

    def __len__(self) -> int: ...


class ExactIndex:
    """Exact (brute-force) cosine search with one matrix-vector product.

    Exact, so recall is always 1.0, with O(1) removal and append. About 11-25 ms per query at
    100k x 384 on two cores: negligible next to the model call a search feeds.

    Args:
        dimensions: Length of every vector.
    """

    def __init__(self, dimensions: int) -> None:
        if dimensions < 1:
            raise ValueError("dimensions must be positive")
        self.dimensions = dimensions
        self._vectors: npt.NDArray[np.float32] = np.empty((0, dimensions), dtype=np.float32)
        self._ids: npt.NDArray[np.int64] = np.empty(0, dtype=np.int64)
        self._rows: dict[int, int] = {}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, ids: Sequence[int], vectors: npt.NDArray[np.float32]) -> None:
        """Add or replace the vectors of ``ids``.

        Raises:
            ValueError: The shapes of ``ids`` and ``vectors`` do not match the index.
        """
        matrix = np.asarray(vectors, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[1] != self.dimensions or matrix.shape[0] != len(ids):
            raise ValueError(f"expected {len(ids)} vectors of {self.dimensions} dimensions, got shape {matrix.shape}")
        self._reserve(self._size + len(ids))
        for key, vector in zip(ids, matrix, strict=True):
            row = self._rows.get(key)
            if row is None:
                row = self._size
                self._rows[key] = row
                self._ids[row] = key
                self._size += 1
            self._vectors[row] = vector

    def remove(self, ids: Sequence[int]) -> None:
        """Forget ``ids`` by moving the last row into each freed slot."""
        for key in ids:
            row = self._rows.pop(key, None)
            if row is None:
                continue
            last = self._size - 1
            if row != last:
                moved = int(self._ids[last])
                self._vectors[row] = self._vectors[last]
                self._ids[row] = moved
                self._rows[moved] = row
            self._size = last

    def search(self, vector: npt.NDArray[np.float32], k: int) -> list[tuple[int, float]]:
        """The ``k`` most similar ids, best first; fewer when the index holds fewer."""
        if k < 1 or self._size == 0:
            return []
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        if query.shape[0] != self.dimensions:
            raise ValueError(f"expected a vector of {self.dimensions} dimensions, got {query.shape[0]}")
        scores = self._vectors[: self._size] @ query
        k = min(k, self._size)
        top = np.argpartition(-scores, k - 1)[:k] if k < self._size else np.arange(self._size)
        order = top[np.argsort(-scores[top], kind="stable")]
        return [(int(self._ids[i]), float(scores[i])) for i in order]

    def _reserve(self, needed: int) -> None:
        capacity = self._vectors.shape[0]
        if needed <= capacity:
            return
        new_capacity = max(needed, capacity * 2, _MIN_CAPACITY)
        vectors = np.empty((new_capacity, self.dimensions), dtype=np.float32)
        vectors[: self._size] = self._vectors[: self._size]
        ids = np.empty(new_capacity, dtype=np.int64)
        ids[: self._size] = self._ids[: self._size]
        self._vectors, self._ids = vectors, ids
