"""A user bot whose one tool needs a person's approval, for the approvals tests (HTTP, CLI, Slack)."""

from __future__ import annotations

import sys
from typing import Any

OPS_BOT = '''
from botfactory.agents import Agent, Bot, tool

EXECUTED: list[str] = []


@tool(side_effect="write", needs_approval=True)
def restart_service(service: str) -> str:
    """Restart a service.

    Args:
        service: The service's name.
    """
    EXECUTED.append(service)
    return f"restarted {service}"


bot = Bot(name="ops", agent=Agent(name="ops", instructions="You run operations.", model="large",
          tools=[restart_service]))
'''


def executed() -> list[str]:
    """The services the loaded bot's tool restarted, in order."""
    module: Any = sys.modules["botfactory_user_bots.ops"]
    return list(module.EXECUTED)
