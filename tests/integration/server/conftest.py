"""A platform on a temporary BOTFACTORY_HOME with scripted models, the real store, embedder and GitHub stand-in.

The shipped docs are embedded once per test session into a template database that each test copies, so every
test starts from a seeded knowledge base without paying for the ingest again.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from slack_rig import TOKEN, SlackRig, slack_rig

from botfactory.config import Settings
from botfactory.memory import OnnxMiniLMEmbedder
from botfactory.server import Platform, open_knowledge
from botfactory.store import Store
from botfactory.testing import ScriptedModel, SlackStandIn, run_standin_server, scripted_inference


@pytest.fixture(scope="session")
def seeded_database(tmp_path_factory: pytest.TempPathFactory, embedder: OnnxMiniLMEmbedder) -> Path:
    """A SQLite database with the shipped docs ingested into the default knowledge base."""
    import asyncio

    path = tmp_path_factory.mktemp("seeded") / "botfactory.db"

    async def seed() -> None:
        async with await Store.open(f"sqlite:///{path}") as store:
            _, report = await open_knowledge(store, embedder=embedder)
            assert report is not None and report.added >= 15

    asyncio.run(seed())
    return path


@pytest.fixture
def scripted() -> dict[str, ScriptedModel]:
    """The models behind ``large`` and ``small``; tests set their scripts."""
    return {"large": ScriptedModel([], name="large"), "small": ScriptedModel([], name="small")}


@pytest.fixture
async def platform(
    tmp_path: Path, seeded_database: Path, embedder: OnnxMiniLMEmbedder, scripted: dict[str, ScriptedModel]
) -> AsyncIterator[Platform]:
    shutil.copy(seeded_database, tmp_path / "botfactory.db")
    settings = Settings.load(home=tmp_path, github_org="example-org")
    started = await Platform.start(settings, inference=scripted_inference(scripted), embedder=embedder)
    try:
        yield started
    finally:
        await started.aclose()


@pytest.fixture
def slack() -> Iterator[tuple[SlackStandIn, str]]:
    """A Slack stand-in accepting the rig's token, on a real loopback server: ``(stand-in, base URL)``."""
    standin = SlackStandIn(token=TOKEN)
    with run_standin_server(standin) as url:
        yield standin, url


@pytest.fixture
async def rig(
    tmp_path: Path, embedder: OnnxMiniLMEmbedder, seeded_database: Path, slack: tuple[SlackStandIn, str]
) -> AsyncIterator[SlackRig]:
    """The echo bot answering Slack on channels C1 and C2 (see ``slack_rig``)."""
    async with slack_rig(tmp_path, embedder, seeded_database, *slack) as started:
        yield started
