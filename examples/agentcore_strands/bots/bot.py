"""The ``strands`` bot: botfactory starts ``../app.py`` (a bedrock-agentcore + Strands app) and sends it each turn.

Point ``BOTFACTORY_BOTS_DIR`` at this directory (or copy this file into yours and set ``AGENTCORE_STRANDS_APP`` to
the app's path). The app's model calls go to this botfactory's inference endpoint, where they are metered and
checked against the bot's budgets.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from botfactory.agents import Bot, BotContext, ContractAgent

APP = Path(os.environ.get("AGENTCORE_STRANDS_APP") or Path(__file__).resolve().parent.parent / "app.py")


def create_bot(context: BotContext) -> Bot:
    """The bot, with the inference URL of the botfactory server these settings describe."""
    settings = context.settings
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    env = {
        "BOTFACTORY_INFERENCE_URL": f"http://{host}:{settings.port}/v1/inference",
        "BOTFACTORY_BOT": "strands",
        "BOTFACTORY_MODEL": os.environ.get("AGENTCORE_STRANDS_MODEL", "small"),
    }
    agent = ContractAgent(
        name="strands",
        command=[sys.executable, str(APP)],
        env=env,
        model=env["BOTFACTORY_MODEL"],
        start_timeout_s=60,
    )
    return Bot(name="strands", agent=agent, description="A Strands agent hosted through the AgentCore contract.")
