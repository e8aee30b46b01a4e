"""The reference bots shipped with botfactory and loaded by ``botfactory up``."""

from __future__ import annotations

from pathlib import Path

from botfactory.agents import Bot, BotContext, BotFactory
from botfactory.bots import support

__all__ = ["REFERENCE_BOTS", "REFERENCE_BOTS_DIR", "SUPPORT_DOCS_DIR", "reference_bots"]

SUPPORT_DOCS_DIR = support.DOCS_DIR
REFERENCE_BOTS_DIR = Path(__file__).parent
"""Each reference bot's folder (``<name>/``), where its ``policies/*.cedar`` live."""

REFERENCE_BOTS: dict[str, BotFactory] = {"support": support.create_bot}


def reference_bots(context: BotContext) -> list[Bot]:
    """Build every reference bot."""
    return [factory(context) for factory in REFERENCE_BOTS.values()]
