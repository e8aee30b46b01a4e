"""Assembling the tool gateway for the bots a process serves: start their tool sources, load their policies.

A bot's policies are the global ones (``gateway.policies_dir``, default ``$BOTFACTORY_HOME/policies``) plus the
``*.cedar`` files in ``<bots dir>/<bot>/policies`` (a user bot) or the reference bot's own ``policies`` folder.
Policies are loaded after the tool sources have started, so policies can read the arguments of MCP and OpenAPI
tools too. A policy that does not parse or validate stops the start (``PolicyError``); nothing falls back to
allowing everything.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from botfactory.agents import Agent, Bot
from botfactory.config import Settings
from botfactory.gateway import (
    CredentialProvider,
    Gateway,
    PolicyEngine,
    ToolSource,
    argument_types_from_json_schemas,
    rate_limiter_from_settings,
)
from botfactory.observability import AuditLog
from botfactory.store import AuditStore, Store

__all__ = [
    "bot_policy_dirs",
    "build_gateway",
    "global_policy_dir",
    "load_policies",
    "start_tool_sources",
    "walk_agents",
]

logger = logging.getLogger(__name__)


def walk_agents(bots: Iterable[Bot]) -> Iterator[Agent]:
    """Every agent of every bot, sub-agents included, each once."""
    seen: set[int] = set()
    pending: list[Agent] = [bot.agent for bot in bots]
    while pending:
        agent = pending.pop()
        if id(agent) in seen:
            continue
        seen.add(id(agent))
        yield agent
        pending.extend(t for t in agent.tools if isinstance(t, Agent))


async def start_tool_sources(bots: Iterable[Bot], stack: contextlib.AsyncExitStack) -> list[ToolSource]:
    """Start every tool source the bots' agents use (each once), closing them when ``stack`` closes.

    Raises:
        ToolUnavailableError: a source cannot be reached; the platform does not start half-equipped.
    """
    started: dict[int, ToolSource] = {}
    for agent in walk_agents(bots):
        for source in agent.sources:
            if id(source) in started:
                continue
            await source.start()
            stack.push_async_callback(source.aclose)
            started[id(source)] = source
            logger.info("source=<%s>, tools=<%d> | tool source started", source.name, len(source.tools))
    return list(started.values())


def global_policy_dir(settings: Settings) -> Path | None:
    """The global policies' directory in effect, or ``None`` when there is none."""
    if settings.gateway.policies_dir is not None:
        return settings.gateway.policies_dir.expanduser()
    default = settings.home / "policies"
    return default if default.is_dir() else None


def bot_policy_dirs(settings: Settings, bots: Iterable[Bot], *, reference_dir: Path | None = None) -> dict[str, Path]:
    """Each bot's policy directory: ``<bots_dir>/<bot>/policies`` if it exists, else ``<reference_dir>/<bot>/policies``
    (the shipped bots' own)."""
    dirs: dict[str, Path] = {}
    for bot in bots:
        candidates = [reference_dir / bot.name / "policies"] if reference_dir is not None else []
        if settings.bots_dir is not None:
            candidates.insert(0, settings.bots_dir / bot.name / "policies")
        found = next((path for path in candidates if path.is_dir()), None)
        if found is not None:
            dirs[bot.name] = found
    return dirs


def load_policies(settings: Settings, bots: Iterable[Bot], *, reference_dir: Path | None = None) -> PolicyEngine:
    """Load and validate the global and per-bot policies for the bots' current tools.

    Raises:
        PolicyError: a policy file is broken, or two tools give one argument name different types.
    """
    bots = list(bots)
    schemas: dict[str, dict[str, Any]] = {}
    for agent in walk_agents(bots):
        for item in agent.granted():
            if not isinstance(item, Agent):
                schemas[item.name] = item.parameters
    return PolicyEngine.load(
        global_dir=global_policy_dir(settings),
        bot_dirs=bot_policy_dirs(settings, bots, reference_dir=reference_dir),
        modes=settings.gateway.policy_modes,
        argument_types=argument_types_from_json_schemas(schemas),
    )


def build_gateway(
    settings: Settings,
    *,
    store: Store,
    bots: Iterable[Bot],
    stack: contextlib.AsyncExitStack,
    reference_dir: Path | None = None,
    credentials: CredentialProvider | None = None,
) -> Gateway:
    """The gateway for these bots: their policies, the audit log in the store, limits and credentials."""
    audit = AuditLog(AuditStore(store.engine))
    stack.push_async_callback(audit.aclose)
    limits = settings.gateway.rate_limits
    rate_limiter = None
    if limits.tools or limits.bots or limits.per_user is not None:
        rate_limiter = rate_limiter_from_settings(settings.gateway, store.engine)
        stack.push_async_callback(rate_limiter.aclose)
    return Gateway(
        policies=load_policies(settings, bots, reference_dir=reference_dir),
        rate_limiter=rate_limiter,
        rate_limits=settings.gateway.rate_limits,
        credentials=credentials,
        audit=audit,
        default_timeout_s=settings.gateway.tool_timeout_s,
        approval_timeout_s=settings.gateway.approval_timeout_s,
    )
