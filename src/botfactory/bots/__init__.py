"""The reference bots shipped with botfactory and loaded by ``botfactory up``."""

from __future__ import annotations

from botfactory.agents import Bot, BotContext, BotFactory
from botfactory.bots import support

__all__ = ["REFERENCE_BOTS", "SUPPORT_DOCS_DIR", "reference_bots"]

SUPPORT_DOCS_DIR = support.DOCS_DIR

REFERENCE_BOTS: dict[str, BotFactory] = {"support": support.create_bot}


def reference_bots(context: BotContext) -> list[Bot]:
    """Build every reference bot."""
    return [factory(context) for factory in REFERENCE_BOTS.values()]
