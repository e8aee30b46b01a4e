"""What the trace-propagation tests share: an instant embedder and a recorder of the headers a served app receives."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt


class FlatEmbedder:
    """One vector for every text: the platform seeds its knowledge base instantly and nothing here searches it."""

    dimensions = 8

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        vectors = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        vectors[:, 0] = 1.0
        return vectors


class HeaderRecorder:
    """ASGI middleware that records the headers of every HTTP request ``wanted`` picks, before the app sees them."""

    def __init__(self, app: Any, wanted: Callable[[str, str], bool]) -> None:
        self.app = app
        self.wanted = wanted
        self.calls: list[dict[str, str]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.wanted(scope["method"], scope["path"]):
            self.calls.append({k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]})
        await self.app(scope, receive, send)
