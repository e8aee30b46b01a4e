"""A platform for the console tests: the support bot and an ``ops`` bot whose tool needs approval, on scripted
models, a real SQLite store and a cheap deterministic embedder (the console never searches the docs itself)."""

from __future__ import annotations

import asyncio
import hashlib
import re
import shutil
import textwrap
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from botfactory.config import Settings
from botfactory.server import Platform, open_knowledge
from botfactory.store import Store
from botfactory.testing import ScriptedModel, scripted_inference

OPS_BOT = '''
from botfactory.agents import Agent, Bot, tool


@tool(side_effect="write", needs_approval=True)
def restart_service(service: str) -> str:
    """Restart a service.

    Args:
        service: The service's name.
    """
    return f"restarted {service}"


bot = Bot(name="ops", description="Runs operations.", agent=Agent(name="ops", instructions="You run operations.",
          model="large", tools=[restart_service]))
'''


class WordsEmbedder:
    """Bag-of-words vectors: deterministic and instant."""

    dimensions = 64

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dimensions] += 1.0
            out[row] /= max(float(np.linalg.norm(out[row])), 1e-9)
        return out


@pytest.fixture(scope="session")
def console_seed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database with the support docs ingested once, copied by every test."""
    path = tmp_path_factory.mktemp("console-seed") / "botfactory.db"

    async def seed() -> None:
        async with await Store.open(f"sqlite:///{path}") as store:
            await open_knowledge(store, embedder=WordsEmbedder())

    asyncio.run(seed())
    return path


@pytest.fixture
def scripted() -> dict[str, ScriptedModel]:
    """The models behind ``large`` and ``small``; tests set their scripts."""
    return {"large": ScriptedModel([], name="large"), "small": ScriptedModel([], name="small")}


@pytest.fixture
def start(tmp_path: Path, console_seed: Path, scripted: dict[str, ScriptedModel]) -> Callable[..., Any]:
    """Starts a platform on this test's home with extra settings; the caller closes it."""
    bots_dir = tmp_path / "bots"
    bots_dir.mkdir()
    (bots_dir / "ops.py").write_text(textwrap.dedent(OPS_BOT))
    shutil.copy(console_seed, tmp_path / "botfactory.db")

    async def started(**settings: Any) -> Platform:
        resolved = Settings.load(home=tmp_path, github_org="example-org", bots_dir=bots_dir, **settings)
        return await Platform.start(resolved, inference=scripted_inference(scripted), embedder=WordsEmbedder())

    return started


@pytest.fixture
async def platform(start: Callable[..., Any]) -> AsyncIterator[Platform]:
    started: Platform = await start(runtime={"max_attempts": 1, "backoff_base_s": 0.0}, auth_cache_s=0.0)
    try:
        yield started
    finally:
        await started.aclose()
