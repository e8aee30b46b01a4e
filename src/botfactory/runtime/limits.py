"""What may stop a step: kill switches (bot, agent, tool) and budgets (tokens and spend per bot, user, session).

:class:`Controls` keeps this process's copy of the kill switches, re-read before a step when it is older than
``runtime.controls_refresh_s`` and at once when a switch changes (in this process, or announced by the
database). :class:`TurnLimits` is the engine's guard for one turn.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import time
from collections.abc import Callable
from typing import Final, Literal

from botfactory.config import BudgetSettings, Settings
from botfactory.errors import BudgetExceededError, InvalidInputError, KillSwitchError, ToolDisabledError
from botfactory.store import RuntimeStore

__all__ = ["KILL_SWITCH_KINDS", "Controls", "KillSwitchKind", "TurnLimits", "utc_day"]

KillSwitchKind = Literal["bot", "agent", "tool"]
KILL_SWITCH_KINDS: Final = ("bot", "agent", "tool")
_CHARS_PER_TOKEN: Final = 4


def utc_day(epoch_s: float) -> str:
    """The UTC date of an instant, as daily budgets count it."""
    return _utc_day(int(epoch_s // 86_400))


@functools.lru_cache(maxsize=8)
def _utc_day(day_number: int) -> str:
    return dt.datetime.fromtimestamp(day_number * 86_400, tz=dt.UTC).strftime("%Y-%m-%d")


class Controls:
    """The kill switches as this process last read them."""

    def __init__(self, store: RuntimeStore, *, refresh_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._refresh_s = refresh_s
        self._clock = clock
        self._switches: dict[tuple[str, str], str | None] = {}
        self._read_at: float | None = None
        self._reading: asyncio.Future[None] | None = None

    def invalidate(self) -> None:
        """Re-read before the next check (a switch changed somewhere)."""
        self._read_at = None

    async def switches(self) -> dict[tuple[str, str], str | None]:
        """Every switch that is on, ``(kind, name) -> reason``, at most ``refresh_s`` old."""
        now = self._clock()
        if self._read_at is None or now - self._read_at >= self._refresh_s:
            # One read for every turn that finds the copy stale at the same moment.
            if self._reading is None:
                self._reading = asyncio.ensure_future(self._read(now))
            await asyncio.shield(self._reading)
        return self._switches

    async def _read(self, now: float) -> None:
        try:
            self._switches = await self._store.kill_switches()
            self._read_at = now
        finally:
            self._reading = None

    async def set(self, kind: str, name: str, *, on: bool, reason: str | None = None) -> bool:
        """Turn a switch on or off everywhere; returns whether it changed.

        Raises:
            InvalidInputError: unknown kind or empty name.
        """
        if kind not in KILL_SWITCH_KINDS:
            raise InvalidInputError(f"a kill switch is for a bot, an agent or a tool, not {kind!r}")
        if not name or len(name) > 256:
            raise InvalidInputError("name the bot, agent or tool to switch, in 1 to 256 characters")
        changed = await self._store.set_kill_switch(kind, name, on=on, reason=reason)
        self.invalidate()
        return changed


class TurnLimits:
    """The engine's guard for one turn: kill switches before every step, budgets before every model call."""

    def __init__(
        self,
        *,
        settings: Settings,
        budgets: BudgetSettings,
        controls: Controls,
        store: RuntimeStore,
        bot: str,
        session_id: str | None,
        user_id: str | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._budgets = budgets
        self._controls = controls
        self._store = store
        self._bot = bot
        self._session_id = session_id
        self._user_id = user_id
        self._clock = clock

    async def before_model_call(self, *, agent_path: str, model: str, prompt_chars: int) -> None:
        """Stop the turn if the bot or agent is switched off or the call would break a budget."""
        await self._check_agents(agent_path)
        if self._budgets.any:
            await self._check_budgets(model, estimated_tokens=prompt_chars // _CHARS_PER_TOKEN + 1)

    async def before_tool_call(self, *, agent_path: str, tool: str, is_agent: bool) -> None:
        """Stop the turn if the bot or calling agent is off; fail the call if the tool (or sub-agent) is off."""
        switches = await self._check_agents(agent_path)
        kind = "agent" if is_agent else "tool"
        names = (tool, f"{agent_path}/{tool}") if is_agent else (tool,)
        for name in names:
            if (kind, name) in switches:
                reason = switches[(kind, name)]
                raise ToolDisabledError(
                    f"the {kind} '{tool}' is switched off by an operator{_because(reason)}; "
                    "answer without it or tell the user it is unavailable"
                )

    async def _check_agents(self, agent_path: str) -> dict[tuple[str, str], str | None]:
        switches = await self._controls.switches()
        if not switches:
            return switches
        if ("bot", self._bot) in switches:
            raise KillSwitchError(
                f"the {self._bot} bot is switched off by an operator{_because(switches[('bot', self._bot)])}; "
                "try again later"
            )
        parts = agent_path.split("/")
        for depth, name in enumerate(parts):
            for key in (name, "/".join(parts[: depth + 1])):
                if ("agent", key) in switches:
                    # A sub-agent switched off fails its caller's call to it (the caller goes on without it);
                    # only the entry agent switched off ends the turn.
                    raise KillSwitchError(
                        f"the agent '{name}' is switched off by an operator{_because(switches[('agent', key)])}; "
                        "try again later",
                        ends_turn=depth == 0,
                    )
        return switches

    async def _check_budgets(self, model: str, *, estimated_tokens: int) -> None:
        day = utc_day(self._clock())
        price = self._settings.price(model)
        estimated_cost = price.cost(estimated_tokens, 0)
        caps: list[tuple[tuple[str, str, str], int | None, float | None, str]] = [
            (
                ("bot", self._bot, day),
                self._budgets.bot_daily_tokens,
                self._budgets.bot_daily_cost,
                f"today's budget of the {self._bot} bot",
            ),
        ]
        if self._session_id is not None:  # None: a call outside any session (the inference endpoint without one)
            caps.append(
                (
                    ("session", self._session_id, ""),
                    self._budgets.session_tokens,
                    self._budgets.session_cost,
                    "this conversation's budget",
                )
            )
        if self._user_id is not None:
            caps.append(
                (
                    ("user", self._user_id, day),
                    self._budgets.user_daily_tokens,
                    self._budgets.user_daily_cost,
                    "your budget for today",
                )
            )
        caps = [cap for cap in caps if cap[1] is not None or cap[2] is not None]
        if not caps:
            return
        used = await self._store.usage([cap[0] for cap in caps])
        for key, max_tokens, max_cost, what in caps:
            tokens, cost = used[key]
            if max_tokens is not None and tokens + estimated_tokens > max_tokens:
                raise BudgetExceededError(
                    f"{what} is used up ({tokens} of {max_tokens} tokens); "
                    f"{'it resets at midnight UTC' if key[2] else 'start a new conversation'}"
                )
            if max_cost is not None and cost + estimated_cost > max_cost:
                raise BudgetExceededError(
                    f"{what} is used up ({cost:.4f} of {max_cost:.4f} spent); "
                    f"{'it resets at midnight UTC' if key[2] else 'start a new conversation'}"
                )


def _because(reason: str | None) -> str:
    return f" ({reason})" if reason else ""
