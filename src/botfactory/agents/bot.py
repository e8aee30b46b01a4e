"""Bots: a named entry agent that channels talk to, and how bots are found."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

from botfactory.agents.agent import Agent
from botfactory.config import BudgetSettings, Settings
from botfactory.errors import BotNotFoundError, ConfigError

if TYPE_CHECKING:
    from botfactory.memory import KnowledgeBase

__all__ = ["Bot", "BotContext", "BotFactory", "BotRegistry", "DoubleTexting", "load_bots_dir"]

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")

DoubleTexting = Literal["enqueue", "coalesce", "interrupt", "reject"]
"""What happens to a message that arrives while the bot is still answering the session's previous one."""


@dataclass(kw_only=True, eq=False)
class Bot:
    """What a channel talks to: a name, a description, and the entry agent that runs each turn.

    Attributes:
        max_tokens_per_turn: Token limit of one turn across every agent it runs.
        double_texting: ``enqueue`` (default: answer each message in turn), ``coalesce`` (messages that arrive
            meanwhile are answered together by the next turn; a reply overtaken by them is not delivered),
            ``interrupt`` (a new message cancels the running turn, and the next turn answers all of them) or
            ``reject`` (a new message is refused with 409 until the reply is out).
        budgets: This bot's token and spend caps; ``None`` takes ``budgets`` from the settings.
        record_content: Record prompts, completions and tool payloads on this bot's spans (masked for PII and
            secrets); off by default, and ``tracing.record_content`` turns it on for every bot.
    """

    name: str
    agent: Agent
    description: str = ""
    max_tokens_per_turn: int = 32_000
    double_texting: DoubleTexting = "enqueue"
    budgets: BudgetSettings | None = None
    record_content: bool = False

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"bot name {self.name!r} must match {_NAME.pattern}")
        if self.double_texting not in get_args(DoubleTexting):
            raise ValueError(
                f"double_texting must be one of {', '.join(get_args(DoubleTexting))}, not {self.double_texting!r}"
            )


@dataclass(frozen=True, kw_only=True)
class BotContext:
    """Services a bot factory may use to build its agents and tools.

    Attributes:
        cleanup: Register the closing of resources the bot opens (HTTP clients, pools); they are closed when
            the platform stops.
    """

    settings: Settings
    knowledge: KnowledgeBase | None = None
    cleanup: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)


BotFactory = Callable[[BotContext], Bot]


class BotRegistry:
    """The bots a process serves, by name."""

    def __init__(self, bots: Iterable[Bot] = ()) -> None:
        self._bots: dict[str, Bot] = {}
        for bot in bots:
            self.add(bot)

    def add(self, bot: Bot) -> None:
        """Register a bot; a second bot with the same name replaces the first, with a warning."""
        if bot.name in self._bots:
            logger.warning("bot=<%s> | replaced by a later definition", bot.name)
        self._bots[bot.name] = bot

    def get(self, name: str) -> Bot:
        """The bot with that name."""
        try:
            return self._bots[name]
        except KeyError:
            known = ", ".join(sorted(self._bots)) or "none"
            raise BotNotFoundError(f"no bot named '{name}' (loaded: {known}); run `botfactory bots list`") from None

    def __iter__(self) -> Iterator[Bot]:
        return iter(sorted(self._bots.values(), key=lambda b: b.name))

    def __len__(self) -> int:
        return len(self._bots)

    def __contains__(self, name: object) -> bool:
        return name in self._bots


def load_bots_dir(directory: Path, context: BotContext) -> list[Bot]:
    """Load every ``*.py`` file in ``directory`` that defines ``bot = Bot(...)`` or ``create_bot(context)``.

    Raises:
        ConfigError: the directory is missing, or a file fails to import or defines neither name.
    """
    if not directory.is_dir():
        raise ConfigError(f"bots directory {directory} does not exist; create it or fix BOTFACTORY_BOTS_DIR")
    bots: list[Bot] = []
    for path in sorted(directory.glob("*.py")):
        if path.name.startswith("_"):
            continue
        module_name = f"botfactory_user_bots.{path.stem}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ConfigError(f"cannot load bot file {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise ConfigError(f"bot file {path} failed to import: {type(exc).__name__}: {exc}") from exc
        factory = getattr(module, "create_bot", None)
        found = factory(context) if callable(factory) else getattr(module, "bot", None)
        if not isinstance(found, Bot):
            raise ConfigError(f"bot file {path} must define `bot = Bot(...)` or `def create_bot(context) -> Bot`")
        bots.append(found)
    return bots
