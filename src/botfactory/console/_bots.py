"""The bots page: each bot with its agents, tools, policies, model aliases and kill switches (on/off)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from botfactory.agents import Agent, Bot
from botfactory.config import Settings
from botfactory.console._core import PREFIX, ConsoleState, Viewer, form
from botfactory.errors import ForbiddenError, InvalidInputError
from botfactory.gateway import PolicyEngine
from botfactory.runtime import KILL_SWITCH_KINDS

__all__ = ["AgentInfo", "BotInfo", "ToolInfo", "bot_routes", "describe_bot"]

logger = logging.getLogger(__name__)

_MAX_REASON: Final = 500


@dataclass(frozen=True, kw_only=True)
class ToolInfo:
    """A tool or sub-agent one agent may call."""

    name: str
    kind: str
    """``tool`` or ``agent``."""
    description: str
    side_effect: str
    needs_approval: bool
    switched_off: bool


@dataclass(frozen=True, kw_only=True)
class AgentInfo:
    """One agent of a bot, with the model its alias names."""

    path: str
    name: str
    alias: str
    provider: str
    model: str
    tools: list[ToolInfo]
    switched_off: bool


@dataclass(frozen=True, kw_only=True)
class BotInfo:
    """What the bots page shows of one bot."""

    name: str
    description: str
    double_texting: str
    max_tokens_per_turn: int
    policy_mode: str
    policies: list[tuple[str, str]]
    """``(policy id, file:line)`` of the global policies and the bot's own."""
    agents: list[AgentInfo] = field(default_factory=list)
    switched_off: bool = False
    reason: str | None = None


def describe_bot(
    bot: Bot,
    *,
    settings: Settings,
    policies: PolicyEngine | None,
    switches: dict[tuple[str, str], str | None],
    bot_names: set[str],
) -> BotInfo:
    """Everything the bots page shows of ``bot``."""
    agents: list[AgentInfo] = []
    pending: list[tuple[Agent, str]] = [(bot.agent, bot.agent.name)]
    while pending:
        agent, path = pending.pop(0)
        tools = []
        for item in agent.granted():
            if isinstance(item, Agent):
                pending.append((item, f"{path}/{item.name}"))
                tools.append(
                    ToolInfo(
                        name=item.name,
                        kind="agent",
                        description=item.description,
                        side_effect="",
                        needs_approval=False,
                        switched_off=("agent", item.name) in switches,
                    )
                )
            else:
                tools.append(
                    ToolInfo(
                        name=item.name,
                        kind="tool",
                        description=item.description,
                        side_effect=item.side_effect,
                        needs_approval=item.needs_approval,
                        switched_off=("tool", item.name) in switches,
                    )
                )
        model = settings.models.get(agent.model)
        agents.append(
            AgentInfo(
                path=path,
                name=agent.name,
                alias=agent.model,
                provider=model.provider if model is not None else "not configured",
                model=model.model if model is not None else "–",
                tools=tools,
                switched_off=("agent", agent.name) in switches,
            )
        )
    return BotInfo(
        name=bot.name,
        description=bot.description,
        double_texting=bot.double_texting,
        max_tokens_per_turn=bot.max_tokens_per_turn,
        policy_mode=policies.mode(bot.name) if policies is not None else "none (every granted tool is allowed)",
        policies=_policies_of(bot.name, policies, bot_names),
        agents=agents,
        switched_off=("bot", bot.name) in switches,
        reason=switches.get(("bot", bot.name)),
    )


def _policies_of(bot: str, policies: PolicyEngine | None, bot_names: set[str]) -> list[tuple[str, str]]:
    """The global policies and the bot's own: a bot's files live in ``.../<bot>/policies/``."""
    if policies is None:
        return []
    found = []
    for policy_id, source in sorted(policies.sources.items()):
        folder = Path(source.rpartition(":")[0] or source).parent
        owner = folder.parent.name if folder.name == "policies" else None
        if owner == bot or owner not in bot_names:
            found.append((policy_id, source))
    return found


def bot_routes(state: ConsoleState) -> list[BaseRoute]:
    """The bots page's routes."""
    runtime = state.runtime

    async def bots(request: Request, viewer: Viewer) -> Response:
        switches = await runtime.kill_switches()
        names = {b.name for b in runtime.bots}
        policies = state.platform.engine.gateway.policies
        shown = [
            describe_bot(b, settings=state.platform.settings, policies=policies, switches=switches, bot_names=names)
            for b in runtime.bots
            if viewer.allows(b.name)
        ]
        return state.render("bots.html", viewer=viewer, page="bots", bots=shown)

    async def switch(request: Request, viewer: Viewer) -> Response:
        fields = await form(request)
        kind, name = fields.get("kind", ""), fields.get("name", "")
        if kind not in KILL_SWITCH_KINDS:
            raise InvalidInputError(f"a kill switch is for one of {', '.join(KILL_SWITCH_KINDS)}")
        principal = viewer.principal
        if principal.kind == "jwt":
            raise ForbiddenError("kill switches are for operators: log in with an API key")
        if principal.bot is not None and (kind != "bot" or name != principal.bot):
            raise ForbiddenError(
                f"this key may only switch bot {principal.bot} itself; agents and tools are shared between bots, "
                "so switching them needs a key for every bot"
            )
        on = fields.get("on") == "1"
        reason = fields.get("reason", "").strip()[:_MAX_REASON] or f"switched from the console by {viewer.name}"
        changed = await runtime.set_kill_switch(kind, name, on=on, reason=reason if on else None)
        logger.info(
            "kind=<%s>, name=<%s>, on=<%s>, changed=<%s> | kill switch set in the console", kind, name, on, changed
        )
        return RedirectResponse(f"{PREFIX}/bots", status_code=303)

    return [
        Route(f"{PREFIX}/bots", state.guard(bots), methods=["GET"]),
        Route(f"{PREFIX}/bots/kill-switch", state.guard(switch), methods=["POST"]),
    ]
