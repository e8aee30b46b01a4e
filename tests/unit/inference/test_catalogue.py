from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from botfactory.config import Settings
from botfactory.errors import ConfigError
from botfactory.inference.catalogue import CATALOGUE, get_spec

REQUIREMENTS = Path(__file__).resolve().parents[3] / "requirements" / "models.txt"


def test_default_aliases_name_catalogue_models() -> None:
    defaults = Settings.model_fields["models"].get_default(call_default_factory=True)
    assert get_spec(defaults["small"].model).size < get_spec(defaults["large"].model).size


def test_unknown_model_lists_known_names() -> None:
    with pytest.raises(ConfigError) as info:
        get_spec("gpt-17")
    assert "qwen2.5-coder-0.5b-instruct-q4_k_m" in info.value.message
    assert "qwen2.5-coder-1.5b-instruct-q4_k_m" in info.value.message


def test_every_part_is_pinned_in_requirements() -> None:
    pinned = {line.split("==")[0].strip() for line in REQUIREMENTS.read_text().splitlines() if "==" in line}
    for spec in CATALOGUE.values():
        assert {p.distribution for p in spec.packages} <= pinned, spec.name


def test_part_files_match_installed_packages() -> None:
    """The catalogue's relative paths are the real ones (skipped where the model packages are absent)."""
    spec = get_spec("qwen2.5-coder-0.5b-instruct-q4_k_m")
    found = [importlib.util.find_spec(p.module) for p in spec.packages]
    if any(f is None for f in found):
        pytest.skip("model part packages not installed")
    sizes = 0
    for part, module_spec in zip(spec.packages, found, strict=True):
        assert module_spec is not None and module_spec.submodule_search_locations
        path = Path(next(iter(module_spec.submodule_search_locations))) / part.file
        sizes += path.stat().st_size
    assert sizes == spec.size
