"""Cedar authorization of tool calls: which calls a bot may make, decided once per call by the gateway.

Precedence, in order:

1. A tool the bot was not granted is denied (``platform:not-granted``) without asking Cedar.
2. A granted tool is permitted by the platform's own policy ``platform:grant``.
3. Global and bot ``forbid`` policies override that permit (Cedar: any satisfied ``forbid`` denies).
   Policy files hold only ``forbid`` policies, so they can narrow a grant but never widen it.

A bot in ``log-only`` mode gets the same decision, recorded, but the call goes ahead (``effective``).
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cedarpy

from botfactory.errors import PolicyError
from botfactory.gateway._cedar_schema import cedar_arguments, schema_text
from botfactory.gateway._policy_files import LoadedPolicy, load_dir

__all__ = ["Decision", "PolicyEngine", "PolicyMode", "PolicyRequest", "PolicySession", "PolicyTool", "PolicyUser"]

logger = logging.getLogger(__name__)

PolicyMode = Literal["enforce", "log-only"]

GRANT_POLICY_ID = "platform:grant"
NOT_GRANTED_ID = "platform:not-granted"
_GRANT_EST = json.loads(cedarpy.policies_to_json_str('permit(principal, action == Action::"call", resource);'))[
    "staticPolicies"
]["policy0"]
_ENTITY_CACHE_SIZE = 4096
# The action as a JSON entity reference: Cedar parses the text form 'Action::"call"' with its grammar on every
# request, which cost ~15 µs of each decision (measured); the reference form skips that.
_ACTION = {"type": "Action", "id": "call"}


@dataclass(frozen=True, kw_only=True)
class PolicyUser:
    """The person a call is made for: ``User::"<id>"`` (e.g. ``slack:T1:U2``)."""

    id: str
    groups: frozenset[str] = frozenset()
    team: str | None = None
    channel: str | None = None


@dataclass(frozen=True, kw_only=True)
class PolicyTool:
    """The tool called: ``Tool::"<name>"`` with what policies may test about it."""

    name: str
    side_effect: Literal["read", "write"] = "read"
    owner: str = ""
    needs_approval: bool = False


@dataclass(frozen=True, kw_only=True)
class PolicySession:
    """The conversation the call belongs to (``context.session``)."""

    id: str
    channel: str | None = None
    thread: str | None = None


@dataclass(frozen=True, kw_only=True)
class PolicyRequest:
    """One tool call to authorize: who, which bot and agent, which tool, with which (validated) arguments."""

    bot: str
    agent: str
    user: PolicyUser
    tool: PolicyTool
    granted: Collection[str]
    arguments: Mapping[str, object] = field(default_factory=dict)
    session: PolicySession


@dataclass(frozen=True, kw_only=True)
class Decision:
    """The outcome of one authorization, for the gateway, the audit log and the trace.

    Attributes:
        allowed: What the policies decided.
        effective: Whether the call goes ahead: ``allowed``, or ``True`` in ``log-only`` mode.
        mode: The bot's policy mode.
        reasons: Ids of the policies that determined the decision (``platform:grant`` for a plain allow).
        errors: Cedar evaluation errors; an erroring policy does not apply, as in Cedar.
        message: Text for the model as the tool's error when the call is denied; empty when allowed.
        elapsed_us: Time spent deciding, in microseconds.
        needs_approval: Denied only by policies annotated ``@approval("required")``: a person may allow the call.
    """

    allowed: bool
    effective: bool
    mode: PolicyMode
    reasons: tuple[str, ...]
    errors: tuple[str, ...]
    message: str
    elapsed_us: float
    needs_approval: bool = False

    @property
    def would_deny(self) -> bool:
        """The policies denied the call but ``log-only`` mode let it through."""
        return self.effective and not self.allowed


class _BotPolicies:
    """One bot's policies (global plus its own), with a pre-parsed ``PolicySet`` per tool.

    Cedar evaluates every policy in a set. A policy scoped to ``resource == Tool::"x"`` can only apply to calls
    of ``x``, so each tool gets a set holding the policies scoped to it and the unscoped ones, built on the
    tool's first call and kept: the same decisions, with the cost of the relevant policies only.
    """

    def __init__(self, policies: list[LoadedPolicy]) -> None:
        self._by_tool: dict[str | None, list[LoadedPolicy]] = {}
        for policy in policies:
            self._by_tool.setdefault(_scoped_tool(policy), []).append(policy)
        self.explanations = {p.id: p.reason for p in policies if p.reason}
        self.approvals = frozenset(p.id for p in policies if p.approval)
        self._sets: dict[str, _ToolPolicies | None] = {}

    def for_tool(self, tool: str) -> _ToolPolicies | None:
        """The pre-parsed set deciding calls of ``tool``; ``None`` when no policy but the grant applies to it (every
        granted call is allowed by ``platform:grant``, so there is nothing for Cedar to decide)."""
        if tool in self._sets:
            return self._sets[tool]
        relevant = self._by_tool.get(None, []) + self._by_tool.get(tool, [])
        found = None
        if relevant:
            static: dict[str, object] = {GRANT_POLICY_ID: _GRANT_EST}
            static.update((p.id, p.est) for p in relevant)
            document = {"staticPolicies": static, "templates": {}, "templateLinks": []}
            found = _ToolPolicies(
                policy_set=cedarpy.PolicySet.from_json_str(json.dumps(document)),
                context_keys=_context_keys(p.est for p in relevant),
            )
        self._sets[tool] = found
        return found


@dataclass(frozen=True)
class _ToolPolicies:
    """The policies deciding one tool's calls, and the context attributes they read (``None``: all of them).

    Cedar builds each request's context from JSON before it evaluates anything, and that is most of a decision's
    cost (each entity reference in it is parsed with Cedar's grammar): measured, the full context cost ~25 µs more
    than one holding only the call's arguments. An attribute no policy of the set names cannot change the decision,
    so requests carry only the named ones.
    """

    policy_set: cedarpy.PolicySet
    context_keys: frozenset[str] | None


def _context_keys(policies: Iterable[Mapping[str, Any]]) -> frozenset[str] | None:
    """The ``context`` attributes the policies read (``context.x``, ``context has x``); ``None`` when any uses
    ``context`` in another way (compares or passes the whole record), which needs every attribute."""
    keys: set[str] = set()

    def visit(node: object) -> bool:  # False: context used whole
        if isinstance(node, list):
            return all(visit(item) for item in node)
        if not isinstance(node, dict):
            return True
        if node.get("Var") == "context":
            return False
        for op in (".", "has"):
            access = node.get(op)
            if isinstance(access, dict) and access.get("left") == {"Var": "context"} and "attr" in access:
                keys.add(str(access["attr"]))
                return True
        return all(visit(value) for value in node.values())

    if not all(visit(policy.get("conditions", [])) for policy in policies):
        return None
    return frozenset(keys)


def _scoped_tool(policy: LoadedPolicy) -> str | None:
    scope = policy.est.get("resource", {})
    entity = scope.get("entity", {}) if scope.get("op") == "==" else {}
    return str(entity["id"]) if entity.get("type") == "Tool" and "id" in entity else None


class PolicyEngine:
    """Pre-parsed Cedar policies per bot, validated at load; ``authorize`` decides one call in microseconds."""

    def __init__(
        self,
        *,
        sets: Mapping[str, _BotPolicies],
        fallback: _BotPolicies,
        modes: Mapping[str, PolicyMode],
        argument_types: Mapping[str, str],
        sources: Mapping[str, str],
    ) -> None:
        self._sets = dict(sets)
        self._fallback = fallback
        self._modes = dict(modes)
        self._argument_types = dict(argument_types)
        self.sources: Mapping[str, str] = dict(sources)  # policy id -> "path:line", for the audit log and docs
        self._entities: OrderedDict[tuple[object, ...], cedarpy.Entities] = OrderedDict()

    @classmethod
    def load(
        cls,
        *,
        global_dir: Path | None,
        bot_dirs: Mapping[str, Path],
        modes: Mapping[str, str],
        argument_types: Mapping[str, str] | None = None,
    ) -> PolicyEngine:
        """Read, validate and pre-parse every policy file; a bot's set is the global policies plus its own.

        Args:
            global_dir: Directory of policies for every bot, or ``None``. Missing directories hold no policies.
            bot_dirs: Each bot's policy directory (``bots/<bot>/policies``).
            modes: ``enforce`` (the default for a bot not named) or ``log-only`` per bot.
            argument_types: Tool argument names policies may read from ``context.arguments`` and their Cedar
                types (see ``argument_types_from_json_schemas``).

        Raises:
            PolicyError: A file does not parse or fails validation (naming file and line), two policies share an
                id, or a mode is unknown. Nothing is ever allowed by falling back.
        """
        types = dict(argument_types or {})
        try:
            schema = cedarpy.Schema.from_str(schema_text(types))
        except ValueError as exc:  # a platform bug, never the user's policy
            raise PolicyError(f"the tool-call schema does not parse: {exc}") from exc
        checked: dict[str, PolicyMode] = {}
        for bot, mode in modes.items():
            if mode == "enforce":
                checked[bot] = "enforce"
            elif mode == "log-only":
                checked[bot] = "log-only"
            else:
                raise PolicyError(f"bot {bot}: unknown policy mode '{mode}'; use 'enforce' or 'log-only'")
        global_policies = load_dir(global_dir, schema) if global_dir is not None else []
        sources: dict[str, str] = {}
        fallback = _build(global_policies, sources)
        sets = {bot: _build(global_policies + load_dir(path, schema), sources) for bot, path in bot_dirs.items()}
        logger.info("bots=<%d>, policies=<%d> | policies loaded", len(sets), len(sources))
        return cls(
            sets=sets,
            fallback=fallback,
            modes=checked,
            argument_types=types,
            sources=sources,
        )

    def mode(self, bot: str) -> PolicyMode:
        """The bot's policy mode (``enforce`` unless configured)."""
        return self._modes.get(bot, "enforce")

    def authorize(self, request: PolicyRequest) -> Decision:
        """Decide whether ``request`` may call its tool; never raises for a bad request, it denies."""
        started = time.perf_counter_ns()
        mode = self.mode(request.bot)
        if request.tool.name not in request.granted:
            message = f"tool {request.tool.name} is not granted to bot {request.bot}"
            return _decide(False, mode, (NOT_GRANTED_ID,), (), message, started, request)
        policies = self._sets.get(request.bot, self._fallback)
        try:
            arguments = cedar_arguments(request.arguments, self._argument_types)
        except ValueError as exc:
            return _decide(False, mode, (), (str(exc),), f"denied: {exc}", started, request)
        tool_policies = policies.for_tool(request.tool.name)
        if tool_policies is None:  # only the grant applies: allowed, as Cedar would decide
            return _decide(True, mode, (GRANT_POLICY_ID,), (), "", started, request)
        keys = tool_policies.context_keys
        context: dict[str, object] = {}
        if keys is None or "bot" in keys:
            context["bot"] = {"__entity": {"type": "Bot", "id": request.bot}}
        if keys is None or "agent" in keys:
            context["agent"] = {"__entity": {"type": "Agent", "id": request.agent}}
        if keys is None or "arguments" in keys:
            context["arguments"] = arguments
        if keys is None or "session" in keys:
            session = request.session
            context["session"] = _without_none({"id": session.id, "channel": session.channel, "thread": session.thread})
        cedar_request = {
            "principal": {"type": "User", "id": request.user.id},
            "action": _ACTION,
            "resource": {"type": "Tool", "id": request.tool.name},
            "context": json.dumps(context),
        }
        result = cedarpy.is_authorized(cedar_request, tool_policies.policy_set, self._entities_for(request))
        reasons = tuple(result.diagnostics.reasons)
        errors = tuple(result.diagnostics.errors)
        if result.allowed:
            return _decide(True, mode, reasons, errors, "", started, request)
        denying = [r for r in reasons if r != GRANT_POLICY_ID]
        if denying:
            explained = "; ".join(
                f"{r}: {policies.explanations[r]}" if r in policies.explanations else r for r in denying
            )
            message = f"denied by policy {explained}"
        else:
            message = "denied: no policy permitted the call" + (f" ({errors[0]})" if errors else "")
        ask = bool(denying) and all(r in policies.approvals for r in denying)
        return _decide(False, mode, reasons, errors, message, started, request, needs_approval=ask)

    def _entities_for(self, request: PolicyRequest) -> cedarpy.Entities:
        user, tool = request.user, request.tool
        key = (request.bot, request.agent, user.id, user.groups, user.team, user.channel, tool)
        cached = self._entities.get(key)
        if cached is not None:
            self._entities.move_to_end(key)
            return cached
        entities = [
            {
                "uid": {"type": "User", "id": user.id},
                "attrs": _without_none({"groups": sorted(user.groups), "team": user.team, "channel": user.channel}),
                "parents": [],
            },
            {
                "uid": {"type": "Tool", "id": tool.name},
                "attrs": {"side_effect": tool.side_effect, "owner": tool.owner, "needs_approval": tool.needs_approval},
                "parents": [],
            },
            {
                "uid": {"type": "Agent", "id": request.agent},
                "attrs": {},
                "parents": [{"type": "Bot", "id": request.bot}],
            },
            {"uid": {"type": "Bot", "id": request.bot}, "attrs": {}, "parents": []},
        ]
        handle = cedarpy.Entities.from_json_str(json.dumps(entities))
        self._entities[key] = handle
        if len(self._entities) > _ENTITY_CACHE_SIZE:
            self._entities.popitem(last=False)
        return handle


def _build(policies: list[LoadedPolicy], sources: dict[str, str]) -> _BotPolicies:
    seen: dict[str, str] = {}
    for policy in policies:
        if policy.id in seen or policy.id == GRANT_POLICY_ID:
            first = seen.get(policy.id, "the platform")
            raise PolicyError(f"{policy.source}: policy id {policy.id} is already used at {first}; rename one @id")
        seen[policy.id] = policy.source
        sources[policy.id] = policy.source
    bot_policies = _BotPolicies(policies)
    # build the whole set once now, so a policy that cannot be assembled fails the load, not a later call
    whole = {p.id: p.est for p in policies} | {GRANT_POLICY_ID: _GRANT_EST}
    cedarpy.PolicySet.from_json_str(json.dumps({"staticPolicies": whole, "templates": {}, "templateLinks": []}))
    return bot_policies


def _without_none(values: dict[str, object]) -> dict[str, object]:
    return {key: value for key, value in values.items() if value is not None}


def _decide(
    allowed: bool,
    mode: PolicyMode,
    reasons: tuple[str, ...],
    errors: tuple[str, ...],
    message: str,
    started: int,
    request: PolicyRequest,
    *,
    needs_approval: bool = False,
) -> Decision:
    elapsed_us = (time.perf_counter_ns() - started) / 1000
    effective = allowed or mode == "log-only"
    if errors:
        logger.warning(
            "bot=<%s>, tool=<%s>, errors=<%s> | policy evaluation errors", request.bot, request.tool.name, errors
        )
    logger.debug(
        "bot=<%s>, agent=<%s>, tool=<%s>, allowed=<%s>, effective=<%s>, reasons=<%s> | tool call authorized",
        request.bot,
        request.agent,
        request.tool.name,
        allowed,
        effective,
        reasons,
    )
    return Decision(
        allowed=allowed,
        effective=effective,
        mode=mode,
        reasons=reasons,
        errors=errors,
        message=message,
        elapsed_us=elapsed_us,
        needs_approval=needs_approval,
    )
