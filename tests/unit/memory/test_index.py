from __future__ import annotations

import numpy as np
import pytest

from botfactory.memory.index import ExactIndex, VectorIndex


def unit(*values: float) -> np.ndarray:
    v = np.array(values, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_search_returns_nearest_first_with_cosine_scores() -> None:
    index = ExactIndex(3)
    index.add([10, 20, 30], np.stack([unit(1, 0, 0), unit(0, 1, 0), unit(1, 1, 0)]))
    hits = index.search(unit(1, 0.1, 0), 2)
    assert [i for i, _ in hits] == [10, 30]
    assert hits[0][1] == pytest.approx(float(unit(1, 0.1, 0) @ unit(1, 0, 0)))
    assert isinstance(index, VectorIndex)


def test_k_larger_than_index_returns_everything() -> None:
    index = ExactIndex(2)
    index.add([1, 2], np.stack([unit(1, 0), unit(0, 1)]))
    assert [i for i, _ in index.search(unit(0, 1), 10)] == [2, 1]
    assert ExactIndex(2).search(unit(0, 1), 3) == []


def test_remove_and_replace() -> None:
    index = ExactIndex(2)
    index.add([1, 2, 3], np.stack([unit(1, 0), unit(0, 1), unit(1, 1)]))
    index.remove([1, 99])
    assert len(index) == 2
    assert [i for i, _ in index.search(unit(1, 0), 3)] == [3, 2]
    index.add([2], unit(1, 0)[None, :])  # replacing keeps one entry per id
    assert len(index) == 2
    assert index.search(unit(1, 0), 1)[0][0] == 2


def test_matches_brute_force_after_growth_and_removals() -> None:
    rng = np.random.default_rng(0)
    data = rng.standard_normal((3000, 16)).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    index = ExactIndex(16)
    for start in range(0, 3000, 700):
        index.add(list(range(start, min(start + 700, 3000))), data[start : start + 700])
    index.remove(list(range(0, 3000, 3)))
    kept = [i for i in range(3000) if i % 3]
    query = data[5]
    expected = sorted(kept, key=lambda i: -float(data[i] @ query))[:10]
    assert [i for i, _ in index.search(query, 10)] == expected


def test_rejects_wrong_shapes() -> None:
    index = ExactIndex(4)
    with pytest.raises(ValueError, match="4 dimensions"):
        index.add([1], np.zeros((1, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="expected 2 vectors"):
        index.add([1, 2], np.zeros((1, 4), dtype=np.float32))
