"""The real small local model, assembled once into a cache shared across test runs.

The cache is ``$BOTFACTORY_TEST_MODELS`` (default ``~/.cache/botfactory-test-models``); assembling takes a
few seconds and is verified by sha256, so a cached file is as good as a fresh one. Tests are skipped
when the model part packages are not installed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from botfactory.errors import ModelInstallError
from botfactory.inference.catalogue import get_spec
from botfactory.inference.install import ensure_model_file

SMALL_MODEL = "qwen2.5-coder-0.5b-instruct-q4_k_m"


@pytest.fixture(scope="session")
def small_model_path() -> Path:
    cache = Path(os.environ.get("BOTFACTORY_TEST_MODELS") or Path.home() / ".cache" / "botfactory-test-models")
    try:
        return ensure_model_file(get_spec(SMALL_MODEL), cache.expanduser())
    except ModelInstallError as exc:
        pytest.skip(f"small model unavailable: {exc.message}")
