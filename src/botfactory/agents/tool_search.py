"""Semantic tool search: pick the few tools a request needs when an agent has too many to show the model at once.

An agent granted more tools than ``gateway.tool_search_threshold`` is shown a platform tool, ``find_tools``, instead
of all of them; the engine answers it with :class:`ToolSearch`, which ranks the granted tools by the cosine
similarity between the query and each tool's ``name: description``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from botfactory.memory import Embedder, aembed
from botfactory.messages import ToolSpec

__all__ = ["FIND_TOOLS", "FIND_TOOLS_SPEC", "Describable", "ToolSearch", "found_tool_names", "render_found"]

logger = logging.getLogger(__name__)

FIND_TOOLS = "find_tools"
"""The name of the platform tool the model searches its tools with."""

FIND_TOOLS_SPEC = ToolSpec(
    name=FIND_TOOLS,
    description=(
        "Find the tools for a task. You have more tools than are listed here: describe what you need to do in "
        "plain words and the best matching tools are returned with what they do. They can be called from your "
        "next step on. Search again with other words if none fits."
    ),
    parameters={
        "type": "object",
        "properties": {
            "query": {
                "type": "string",
                "minLength": 1,
                "description": "The task, in plain words, e.g. 'give someone a GitHub Copilot license'.",
            }
        },
        "required": ["query"],
        "additionalProperties": False,
    },
)
"""What the model is told about ``find_tools``."""

_DESCRIPTION_CHARS = 300


class Describable(Protocol):
    """Anything with a name and a description: a tool or a sub-agent."""

    @property
    def name(self) -> str:
        """What the model calls it."""
        ...

    @property
    def description(self) -> str:
        """What it does."""
        ...


T = TypeVar("T", bound=Describable)


class ToolSearch:
    """Ranks tools by how well their name and description match a request.

    Each distinct ``(name, description)`` is embedded once and kept, so a turn only embeds its query. Share one
    instance across turns (and its embedder with the knowledge base: it holds the model).

    Args:
        embedder: The sentence-embedding model, e.g. :class:`~botfactory.memory.OnnxMiniLMEmbedder`.
    """

    def __init__(self, embedder: Embedder) -> None:
        self._embedder = embedder
        self._vectors: dict[tuple[str, str], npt.NDArray[np.float32]] = {}

    async def search(self, tools: Sequence[T], query: str, k: int = 8) -> list[T]:
        """The ``k`` tools (at most) that best match ``query``, best first; ties keep the order of ``tools``."""
        if not tools or k < 1:
            return []
        keys = [(t.name, t.description) for t in tools]
        missing = list(dict.fromkeys(key for key in keys if key not in self._vectors))
        # The query rides along with the new tools: one trip to the worker thread per search.
        vectors = await aembed(self._embedder, [query, *(f"{name}: {description}" for name, description in missing)])
        for key, vector in zip(missing, vectors[1:], strict=True):
            self._vectors[key] = vector
        if missing:
            logger.debug("tools=<%d> | embedded tool descriptions", len(missing))
        matrix = np.stack([self._vectors[key] for key in keys])
        scores = _normalized(matrix) @ _normalized(vectors[:1])[0]
        order = np.argsort(-scores, kind="stable")[:k]
        return [tools[int(i)] for i in order]


def render_found(tools: Sequence[Describable]) -> str:
    """The output of a ``find_tools`` call: JSON the model reads and the engine activates tools from."""
    found = [{"name": t.name, "description": _short(t.description)} for t in tools]
    return json.dumps({"tools": found}, ensure_ascii=False)


def found_tool_names(output: str) -> list[str]:
    """The tool names in a ``find_tools`` output (none for an error or anything else)."""
    try:
        parsed: Any = json.loads(output)
    except ValueError:
        return []
    tools = parsed.get("tools") if isinstance(parsed, dict) else None
    if not isinstance(tools, list):
        return []
    return [str(t["name"]) for t in tools if isinstance(t, dict) and isinstance(t.get("name"), str)]


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _DESCRIPTION_CHARS else text[: _DESCRIPTION_CHARS - 1] + "…"


def _normalized(matrix: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    result: npt.NDArray[np.float32] = (matrix / np.maximum(norms, 1e-12)).astype(np.float32)
    return result
