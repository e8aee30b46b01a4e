"""The reference support bot: answers platform questions from the shipped docs and grants Copilot seats."""

from __future__ import annotations

from pathlib import Path

from botfactory.agents import Bot, BotContext
from botfactory.bots.support.agents import build_agents
from botfactory.bots.support.github import GitHubCopilotClient
from botfactory.errors import ConfigError

__all__ = ["DOCS_DIR", "create_bot"]

DOCS_DIR = Path(__file__).parent / "docs"


def create_bot(context: BotContext) -> Bot:
    """Build the support bot from settings: GitHub URL, organisation and token, and the default knowledge base."""
    settings = context.settings
    if context.knowledge is None:
        raise ConfigError("the support bot needs a knowledge base; run it through `botfactory up` or `chat`")
    if not settings.github_base_url:
        raise ConfigError("the support bot needs BOTFACTORY_GITHUB_BASE_URL (or `botfactory up`'s demo stand-in)")
    client = GitHubCopilotClient(
        settings.github_base_url,
        settings.github_org,
        settings.github_token.get_secret_value() if settings.github_token else None,
    )
    context.cleanup.push_async_callback(client.aclose)
    orchestrator, _ = build_agents(context.knowledge, client)
    return Bot(
        name="support",
        agent=orchestrator,
        description="Answers internal platform questions from the docs, with sources; grants GitHub Copilot seats.",
    )
