"""Bots: registry lookups and loading user bots from a directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from botfactory.agents import Agent, Bot, BotContext, BotRegistry, load_bots_dir
from botfactory.config import Settings
from botfactory.errors import BotNotFoundError, ConfigError


@pytest.fixture
def context(tmp_path: Path) -> BotContext:
    return BotContext(settings=Settings.load(home=tmp_path))


def test_registry_lists_sorted_and_names_the_known_bots_on_a_miss() -> None:
    registry = BotRegistry([Bot(name=n, agent=Agent(name="a", instructions="x")) for n in ("zeta", "alpha")])
    assert [b.name for b in registry] == ["alpha", "zeta"]
    assert "alpha" in registry
    with pytest.raises(BotNotFoundError, match=r"no bot named 'nope' \(loaded: alpha, zeta\)"):
        registry.get("nope")


def test_load_bots_dir_accepts_a_bot_variable_and_a_factory(tmp_path: Path, context: BotContext) -> None:
    bots = tmp_path / "bots"
    bots.mkdir()
    (bots / "plain.py").write_text(
        "from botfactory.agents import Agent, Bot\n"
        "bot = Bot(name='plain', agent=Agent(name='plain', instructions='hi'))\n"
    )
    (bots / "factory.py").write_text(
        "from botfactory.agents import Agent, Bot\n"
        "def create_bot(context):\n"
        "    return Bot(name='made', description=str(context.settings.port), agent=Agent(name='m', instructions='x'))\n"
    )
    (bots / "_helpers.py").write_text("raise RuntimeError('private modules are not loaded')\n")
    loaded = {b.name: b for b in load_bots_dir(bots, context)}
    assert set(loaded) == {"plain", "made"}
    assert loaded["made"].description == "8080"


def test_load_bots_dir_reports_broken_files_clearly(tmp_path: Path, context: BotContext) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_bots_dir(tmp_path / "missing", context)
    (tmp_path / "empty.py").write_text("x = 1\n")
    with pytest.raises(ConfigError, match=r"must define `bot = Bot\(...\)`"):
        load_bots_dir(tmp_path, context)
    (tmp_path / "empty.py").write_text("import nonexistent_module_xyz\n")
    with pytest.raises(ConfigError, match="failed to import: ModuleNotFoundError"):
        load_bots_dir(tmp_path, context)


def test_agent_definitions_are_checked() -> None:
    with pytest.raises(ValueError, match="must match"):
        Agent(name="Bad Name", instructions="x")
    with pytest.raises(ValueError, match="requires a tool call but has no tools"):
        Agent(name="a", instructions="x", tool_choice="required")
    with pytest.raises(ValueError, match="string 'answer'"):
        Agent(name="a", instructions="x", output_schema={"type": "object", "properties": {}})
