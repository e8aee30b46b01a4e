"""The engine: runs one turn of a bot, agent by agent, step by step.

Every model call and tool call is a step with a stable position in the turn (counted in execution order
across the whole agent tree), its input and its output. Steps are handed to a :class:`StepRecorder` before
the loop proceeds, which is where the durable runtime persists them. A turn resumed after a crash is given
the steps recorded so far: they are replayed (their recorded results used, nothing re-executed) and the turn
continues from the first position without a record. Because a turn's control flow depends only on the
results of its steps, replay reaches the same positions the first run did.

A :class:`TurnGuard` is asked before every step that runs: that is where budgets and kill switches apply.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import jsonschema
from opentelemetry.trace import SpanKind

from botfactory.agents.agent import NO_PARAMETERS, SUBAGENT_PARAMETERS, Agent, prefetch_argument, subagent_spec
from botfactory.agents.events import (
    AgentFinished,
    Event,
    ModelCallFinished,
    ModelCallStarted,
    ToolCallFinished,
    ToolCallStarted,
)
from botfactory.agents.external import ContractAgent, ContractChunk
from botfactory.agents.tool import check_arguments
from botfactory.agents.tool_search import FIND_TOOLS, FIND_TOOLS_SPEC, ToolSearch, found_tool_names, render_found
from botfactory.errors import (
    ApprovalPendingError,
    BotfactoryError,
    LimitExceededError,
    StepLimitError,
    StoreError,
    TokenLimitError,
    ToolDeniedError,
    ToolError,
    ToolNotFoundError,
)
from botfactory.gateway import (
    CallContext,
    CredentialRef,
    Gateway,
    GatewayCall,
    GatewayTool,
    PolicySession,
    PolicyUser,
    SideEffect,
)
from botfactory.inference import Inference, ModelRequest
from botfactory.messages import Message, ToolCall, ToolSpec, Usage
from botfactory.observability import CONTENT_RECORDED, GEN_AI_CONVERSATION_ID, content_json, messages_json, tracer

__all__ = [
    "AgentResult",
    "Engine",
    "EventHandler",
    "Step",
    "StepRecorder",
    "TurnGuard",
    "TurnInput",
    "TurnResult",
]

logger = logging.getLogger(__name__)

EventHandler = Callable[[Event], Awaitable[None]]
_MAX_TOOL_OUTPUT_CHARS = 6_000
_EVENT_OUTPUT_CHARS = 300
_LISTED_TOOLS = 24
_TRACER = tracer("agents")
_SUBAGENT_VALIDATOR = jsonschema.Draft202012Validator(SUBAGENT_PARAMETERS)
_NO_ARGUMENTS_VALIDATOR = jsonschema.Draft202012Validator(NO_PARAMETERS)
_FIND_TOOLS_VALIDATOR = jsonschema.Draft202012Validator(FIND_TOOLS_SPEC.parameters)
_FOUND_TOOLS = 8


@dataclass(frozen=True, kw_only=True)
class Step:
    """One recorded model or tool call."""

    position: int
    agent_path: str
    kind: str
    name: str
    input: dict[str, Any]
    output: dict[str, Any]
    ok: bool
    started_at: float
    finished_at: float


class StepRecorder(Protocol):
    """Receives every step as soon as it completes, before the turn proceeds."""

    async def record(self, step: Step) -> None:
        """Persist or observe one step."""


class TurnGuard(Protocol):
    """Asked before every step that runs (not before replayed ones); raises to stop it.

    Raise a :class:`LimitExceededError` (budget, kill switch) to end the turn with a message for the user, or
    a :class:`ToolError` from :meth:`before_tool_call` to fail just that call (the model sees the error).
    """

    async def before_model_call(self, *, agent_path: str, model: str, prompt_chars: int) -> None:
        """Before a model call of the agent at ``agent_path``."""

    async def before_tool_call(self, *, agent_path: str, tool: str, is_agent: bool) -> None:
        """Before a tool call (``is_agent`` when the tool is a sub-agent) made by the agent at ``agent_path``."""


@dataclass(frozen=True, kw_only=True)
class TurnInput:
    """What a turn starts from.

    Attributes:
        bot: The bot the turn runs, whose policies the gateway applies.
        resources: Per-session objects tools may keep in memory between turns (see ``ToolContext.resources``).
        caller: Who the turn acts for, as policies see them (groups, team, ingress channel); default: ``user_id``
            with no attributes.
        session: The conversation's attributes for policies (e.g. the Slack channel and thread).
        record_content: Record prompts, completions and tool payloads on the turn's spans (the bot opted in).
    """

    session_id: str
    turn_id: str
    text: str
    bot: str = ""
    user_id: str | None = None
    history: Sequence[Message] = ()
    resources: dict[str, Any] | None = None
    caller: PolicyUser | None = None
    session: PolicySession | None = None
    record_content: bool = False


@dataclass(frozen=True, kw_only=True)
class AgentResult:
    """An agent's final answer."""

    answer: str
    structured: dict[str, Any] | None = None
    return_direct: bool = False


@dataclass(frozen=True, kw_only=True)
class TurnResult:
    """The outcome of a turn: the reply and what it cost."""

    reply: str
    usage: Usage
    steps: int


@dataclass(kw_only=True)
class _TurnState:
    turn: TurnInput
    max_tokens: int
    max_steps: int | None
    on_event: EventHandler | None
    recorder: StepRecorder | None
    guard: TurnGuard | None
    replay: dict[int, Step]
    position: int = 0
    usage: Usage = field(default_factory=Usage)
    activated: dict[str, dict[str, None]] = field(default_factory=dict)
    """Per agent path, while that agent runs with ``find_tools``: the tools shown to its model, in order."""

    def next_position(self) -> int:
        if self.max_steps is not None and self.position >= self.max_steps and self.position + 1 not in self.replay:
            raise StepLimitError(
                f"this turn made {self.position} model and tool calls, its limit; "
                "ask for less at once or raise runtime.turn_max_steps",
                ends_turn=True,
            )
        self.position += 1
        return self.position

    @property
    def span_attributes(self) -> dict[str, str | bool]:
        """Attributes every span of the turn carries (and the content mark, when the bot records content)."""
        attributes: dict[str, str | bool] = {
            GEN_AI_CONVERSATION_ID: self.turn.session_id,
            "botfactory.turn.id": self.turn.turn_id,
            "botfactory.bot": self.turn.bot,
        }
        if self.turn.user_id:
            attributes["botfactory.user"] = self.turn.user_id
        if self.turn.record_content:
            attributes[CONTENT_RECORDED] = True
        return attributes

    async def emit(self, event: Event) -> None:
        if self.on_event is not None:
            await self.on_event(event)

    async def record(self, step: Step) -> None:
        if self.recorder is not None:
            await self.recorder.record(step)


class Engine:
    """Runs turns against the inference service; every tool call goes through the gateway.

    Args:
        inference: Where every model call goes.
        gateway: Validates, authorizes, rate-limits, credentials, runs and audits tool calls; default: a gateway
            that validates and allows the agent's own tools only, with no audit.
        clock: Wall-clock source for step timestamps (injectable for tests).
        tool_search: Ranks tools for ``find_tools``; ``None``: every agent's model sees all its tools.
        max_visible_tools: An agent granted more tools than this (and a ``tool_search`` set) is shown only
            ``find_tools`` and the tools it found or called so far in its run.
    """

    def __init__(
        self,
        inference: Inference,
        *,
        gateway: Gateway | None = None,
        clock: Callable[[], float] = time.time,
        tool_search: ToolSearch | None = None,
        max_visible_tools: int = 24,
    ) -> None:
        self.inference = inference
        self.gateway = gateway or Gateway()
        self._clock = clock
        self.tool_search = tool_search
        self.max_visible_tools = max_visible_tools

    async def run_turn(
        self,
        agent: Agent,
        turn: TurnInput,
        *,
        max_tokens: int = 32_000,
        max_steps: int | None = None,
        on_event: EventHandler | None = None,
        recorder: StepRecorder | None = None,
        replay: Sequence[Step] = (),
        guard: TurnGuard | None = None,
    ) -> TurnResult:
        """Run one turn with ``agent`` as the entry agent and return its reply.

        Args:
            max_steps: Model and tool calls allowed in the whole turn (replayed ones count).
            replay: Steps this turn recorded before a crash; they are not run again.
            guard: Asked before each step that runs.

        Raises:
            StepLimitError: the entry agent used its ``max_steps`` model calls without answering, or the turn
                reached ``max_steps``.
            TokenLimitError: the turn used more than ``max_tokens`` tokens.
            LimitExceededError: the guard stopped the turn (budget, kill switch).
            ModelError: a model call failed after retries and fallbacks.
        """
        state = _TurnState(
            turn=turn,
            max_tokens=max_tokens,
            max_steps=max_steps,
            on_event=on_event,
            recorder=recorder,
            guard=guard,
            replay={step.position: step for step in replay},
        )
        messages = [Message(role="system", content=agent.instructions), *turn.history]
        messages.append(Message(role="user", content=turn.text))
        result = await self._run_agent(agent, agent.name, messages, state)
        return TurnResult(reply=render_answer(result), usage=state.usage, steps=state.position)

    async def _run_agent(self, agent: Agent, path: str, messages: list[Message], state: _TurnState) -> AgentResult:
        attributes = {**state.span_attributes, "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": agent.name}
        with _TRACER.start_as_current_span(f"invoke_agent {agent.name}", attributes=attributes) as span:
            span.set_attribute("botfactory.agent.path", path)
            return await self._agent_loop(agent, path, messages, state)

    async def _agent_loop(self, agent: Agent, path: str, messages: list[Message], state: _TurnState) -> AgentResult:
        if isinstance(agent, ContractAgent):
            return await self._run_contract(agent, path, messages, state)
        specs = agent.tool_specs()
        searching = self._searches(path, specs)
        state.activated.pop(path, None)
        if searching:  # a prefetch call is in the model's context: its tool stays listed
            state.activated[path] = {agent.prefetch.name: None} if agent.prefetch is not None else {}
        used_tool = False
        if agent.prefetch is not None:
            used_tool = await self._prefetch(agent, agent.prefetch, path, messages, state)
        for _ in range(agent.max_steps):
            if state.usage.total_tokens >= state.max_tokens:
                raise TokenLimitError(
                    f"this turn used {state.usage.total_tokens} tokens, over its limit of {state.max_tokens}; "
                    "ask a shorter question or raise turn_max_tokens"
                )
            request = ModelRequest(
                messages=tuple(messages),
                tools=_visible(specs, state.activated[path]) if searching else specs,
                response_schema=agent.output_schema,
                tool_choice="required" if agent.tool_choice == "required" and not used_tool else "auto",
            )
            position = state.next_position()
            recorded = state.replay.get(position)
            if recorded is not None:
                message, structured, usage = _replayed_model_call(recorded)
                state.usage = state.usage + usage
            else:
                message, structured = await self._call_model(agent, path, position, request, state)
            if not message.tool_calls:
                result = AgentResult(answer=message.content, structured=structured)
                await state.emit(
                    AgentFinished(turn_id=state.turn.turn_id, agent_path=path, answer=render_answer(result))
                )
                return result
            messages.append(message)
            used_tool = True
            for call in message.tool_calls:
                output, direct = await self._run_tool(agent, path, call, state)
                if direct is not None:
                    await state.emit(AgentFinished(turn_id=state.turn.turn_id, agent_path=path, answer=output))
                    return direct
                messages.append(Message(role="tool", content=output, tool_call_id=call.id, name=call.name))
                if searching:  # from the call and its (possibly replayed) output only, so a resumed turn agrees
                    found = found_tool_names(output) if call.name == FIND_TOOLS else [call.name]
                    granted = {s.name for s in specs}
                    state.activated[path].update((name, None) for name in found if name in granted)
        raise StepLimitError(
            f"agent '{path}' reached its limit of {agent.max_steps} steps without an answer; "
            "simplify the request or raise the agent's max_steps"
        )

    async def _run_contract(
        self, agent: ContractAgent, path: str, messages: list[Message], state: _TurnState
    ) -> AgentResult:
        """An external agent app answers the request as one step: recorded, so a resumed turn never calls it twice."""
        prompt = next((m.content for m in reversed(messages) if m.role == "user"), "") or ""
        position = state.next_position()
        recorded = state.replay.get(position)
        if recorded is not None:
            answer = str(recorded.output.get("reply", ""))
        else:
            if state.guard is not None:  # kill switches and budgets; the app's own model calls are metered as they go
                await state.guard.before_model_call(agent_path=path, model=agent.model, prompt_chars=len(prompt))
            turn_id = state.turn.turn_id

            async def forward(text: str, raw: str) -> None:
                chunk = ContractChunk(turn_id=turn_id, agent_path=path, position=position, text=text, raw=raw)
                await state.emit(chunk)

            started = self._clock()
            reply = await agent.invoke(
                session_id=state.turn.session_id,
                prompt=prompt,
                user_id=state.turn.user_id,
                request_id=f"{turn_id}:{position}",
                on_chunk=forward,
            )
            answer = reply.text
            await state.record(
                Step(
                    position=position,
                    agent_path=path,
                    kind="tool",
                    name=agent.name,
                    input={"contract": True, "prompt_chars": len(prompt)},
                    output={"reply": answer, "streamed": reply.streamed, "chunks": reply.chunks},
                    ok=True,
                    started_at=started,
                    finished_at=self._clock(),
                )
            )
        await state.emit(AgentFinished(turn_id=state.turn.turn_id, agent_path=path, answer=answer))
        return AgentResult(answer=answer)

    async def _call_model(
        self, agent: Agent, path: str, position: int, request: ModelRequest, state: _TurnState
    ) -> tuple[Message, dict[str, Any] | None]:
        if state.guard is not None:
            prompt_chars = sum(len(m.content or "") for m in request.messages)
            await state.guard.before_model_call(agent_path=path, model=agent.model, prompt_chars=prompt_chars)
        await state.emit(
            ModelCallStarted(turn_id=state.turn.turn_id, agent_path=path, position=position, model=agent.model)
        )
        started = self._clock()
        attributes = {**state.span_attributes, "gen_ai.operation.name": "chat", "gen_ai.request.model": agent.model}
        with _TRACER.start_as_current_span(f"chat {agent.model}", kind=SpanKind.CLIENT, attributes=attributes) as span:
            if state.turn.record_content:
                span.set_attribute("gen_ai.system_instructions", content_json(agent.instructions))
                span.set_attribute("gen_ai.input.messages", messages_json(request.messages))
            response = await self.inference.complete(agent.model, request)
            if state.turn.record_content:
                span.set_attribute("gen_ai.output.messages", messages_json([response.message]))
            span.set_attributes(
                {
                    "gen_ai.response.model": response.model,
                    "gen_ai.usage.input_tokens": response.usage.input_tokens,
                    "gen_ai.usage.output_tokens": response.usage.output_tokens,
                    "gen_ai.response.finish_reasons": ["tool_calls" if response.message.tool_calls else "stop"],
                }
            )
        state.usage = state.usage + response.usage
        await state.record(
            Step(
                position=position,
                agent_path=path,
                kind="model",
                name=agent.model,
                input={"messages": len(request.messages), "tools": [s.name for s in request.tools]},
                output={
                    "message": response.message.to_dict(),
                    "structured": response.structured,
                    "usage": {
                        "input_tokens": response.usage.input_tokens,
                        "output_tokens": response.usage.output_tokens,
                    },
                    "model": response.model,
                },
                ok=True,
                started_at=started,
                finished_at=self._clock(),
            )
        )
        await state.emit(
            ModelCallFinished(
                turn_id=state.turn.turn_id,
                agent_path=path,
                position=position,
                model=response.model,
                usage=response.usage,
                latency_s=response.latency_s,
            )
        )
        return response.message, response.structured

    async def _prefetch(
        self, agent: Agent, prefetch: GatewayTool, path: str, messages: list[Message], state: _TurnState
    ) -> bool:
        """Run the agent's prefetch tool on its request, shown to the model as its own first tool call."""
        request = next((m.content for m in reversed(messages) if m.role == "user"), "")
        call = ToolCall(id="prefetch", name=prefetch.name, arguments={prefetch_argument(prefetch): request})
        messages.append(Message(role="assistant", tool_calls=(call,)))
        output, _ = await self._run_tool(agent, path, call, state)
        messages.append(Message(role="tool", content=output, tool_call_id=call.id, name=call.name))
        return True

    async def _run_tool(
        self, agent: Agent, path: str, call: ToolCall, state: _TurnState
    ) -> tuple[str, AgentResult | None]:
        """Run one tool call; failures become the tool's error text for the model. Returns (output, direct)."""
        position = state.next_position()
        recorded = state.replay.get(position)
        if recorded is not None:
            return self._replayed_tool_call(recorded, state)
        attributes = {
            **state.span_attributes,
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": call.name,
            "gen_ai.tool.call.id": call.id,
        }
        with _TRACER.start_as_current_span(f"execute_tool {call.name}", attributes=attributes) as span:
            if state.turn.record_content:
                span.set_attribute("gen_ai.tool.call.arguments", content_json(call.arguments))
            output, direct, ok = await self._execute_tool(agent, path, call, position, state)
            span.set_attribute("botfactory.tool.ok", ok)
            if state.turn.record_content:
                span.set_attribute("gen_ai.tool.call.result", content_json(output))
        return output, direct

    async def _execute_tool(
        self, agent: Agent, path: str, call: ToolCall, position: int, state: _TurnState
    ) -> tuple[str, AgentResult | None, bool]:
        await state.emit(
            ToolCallStarted(
                turn_id=state.turn.turn_id, agent_path=path, position=position, tool=call.name, arguments=call.arguments
            )
        )
        started = self._clock()
        direct: AgentResult | None = None
        ok = False
        try:
            if call.name == FIND_TOOLS and path in state.activated:
                output, direct = await self._find_tools(agent, path, call, state), None
            else:
                output, direct = await self._through_gateway(agent, path, call, position, state)
            ok = True
        except BotfactoryError as exc:
            if isinstance(exc, StoreError | ApprovalPendingError) or (
                isinstance(exc, LimitExceededError) and exc.ends_turn
            ):
                raise  # the turn stops here (an approval pauses it); the call is not recorded, so it runs on resume
            output = f"error: {exc.message}"
            logger.info(
                "turn_id=<%s>, tool=<%s>, code=<%s> | tool call failed", state.turn.turn_id, call.name, exc.code
            )
        except Exception as exc:  # a tool's own bug must not kill the turn; the model sees a short error
            output = f"error: the tool failed ({type(exc).__name__}: {str(exc)[:200]})"
            logger.warning("turn_id=<%s>, tool=<%s> | tool raised", state.turn.turn_id, call.name, exc_info=True)
        finished = self._clock()
        await state.record(
            Step(
                position=position,
                agent_path=path,
                kind="tool",
                name=call.name,
                input={"arguments": call.arguments},
                output={"output": output, "direct": direct is not None, "last_position": state.position},
                ok=ok,
                started_at=started,
                finished_at=finished,
            )
        )
        await state.emit(
            ToolCallFinished(
                turn_id=state.turn.turn_id,
                agent_path=path,
                position=position,
                tool=call.name,
                ok=ok,
                output=output[:_EVENT_OUTPUT_CHARS],
                latency_s=finished - started,
            )
        )
        return output, direct, ok

    async def _through_gateway(
        self, agent: Agent, path: str, call: ToolCall, position: int, state: _TurnState
    ) -> tuple[str, AgentResult | None]:
        granted = agent.granted()
        target = next((t for t in granted if t.name == call.name), None)
        if state.guard is not None and target is not None:
            await state.guard.before_tool_call(agent_path=path, tool=call.name, is_agent=isinstance(target, Agent))
        turn = state.turn
        request = GatewayCall(
            bot=turn.bot,
            agent_path=path,
            tool=_UnknownTool(call.name) if target is None else _SubagentTool.of(target),
            arguments=call.arguments,
            granted=frozenset(t.name for t in granted),
            session=turn.session or PolicySession(id=turn.session_id),
            turn_id=turn.turn_id,
            idempotency_key=f"{turn.turn_id}:{position}",
            user=turn.caller or (PolicyUser(id=turn.user_id) if turn.user_id else None),
            position=position,
            resources=turn.resources if turn.resources is not None else {},
        )
        if isinstance(target, Agent):
            subagent = target

            async def run_subagent(context: CallContext) -> tuple[str, AgentResult | None]:
                return await self._run_subagent(subagent, f"{path}/{subagent.name}", call.arguments, state)

            output, direct = await self.gateway.call(request, run_subagent)
            return str(output), direct
        try:
            return _tool_output(await self.gateway.call(request)), None
        except ToolDeniedError as exc:
            if target is None:  # the model made the name up: tell it what it can call
                names = [t.name for t in granted]
                known = ", ".join(names[:_LISTED_TOOLS]) or "none"
                if len(names) > _LISTED_TOOLS:
                    known += f" and {len(names) - _LISTED_TOOLS} more (use {FIND_TOOLS} to search them)"
                raise ToolNotFoundError(f"there is no tool named '{call.name}'; available tools: {known}") from exc
            raise

    def _searches(self, path: str, specs: Sequence[ToolSpec]) -> bool:
        """Whether the agent at ``path`` is shown ``find_tools`` instead of its tools."""
        if self.tool_search is None or len(specs) <= self.max_visible_tools:
            return False
        if any(s.name == FIND_TOOLS for s in specs):
            logger.warning(
                "agent_path=<%s> | a granted tool is named '%s': showing every tool; rename it to enable tool search",
                path,
                FIND_TOOLS,
            )
            return False
        return True

    async def _find_tools(self, agent: Agent, path: str, call: ToolCall, state: _TurnState) -> str:
        """Answer a ``find_tools`` call: the granted tools that best match its query (not a gateway call)."""
        if state.guard is not None:
            await state.guard.before_tool_call(agent_path=path, tool=FIND_TOOLS, is_agent=False)
        check_arguments(FIND_TOOLS, _FIND_TOOLS_VALIDATOR, call.arguments)
        query = str(call.arguments["query"]).strip()
        if not query:
            raise ToolError(f"call '{FIND_TOOLS}' with a 'query' describing the task in plain words")
        if self.tool_search is None:  # unreachable: only searching agents get here
            raise ToolNotFoundError(f"'{FIND_TOOLS}' is not available to this agent; call its tools directly")
        found = await self.tool_search.search(agent.tool_specs(), query, k=_FOUND_TOOLS)
        logger.debug("turn_id=<%s>, agent_path=<%s>, found=<%d> | tools found", state.turn.turn_id, path, len(found))
        return render_found(found)

    @staticmethod
    def _replayed_tool_call(recorded: Step, state: _TurnState) -> tuple[str, AgentResult | None]:
        output = str(recorded.output.get("output", ""))
        # A sub-agent's own steps come after its call's position; skip past them all.
        state.position = max(state.position, int(recorded.output.get("last_position", recorded.position)))
        direct = AgentResult(answer=output, return_direct=True) if recorded.output.get("direct") else None
        return output, direct

    async def _run_subagent(
        self, agent: Agent, path: str, arguments: dict[str, Any], state: _TurnState
    ) -> tuple[str, AgentResult | None]:
        if agent.input == "user_message":
            check_arguments(agent.name, _NO_ARGUMENTS_VALIDATOR, arguments)
            request = state.turn.text
        else:
            check_arguments(agent.name, _SUBAGENT_VALIDATOR, arguments)
            request = str(arguments["request"])
        if not request.strip():
            raise ToolError(f"call the '{agent.name}' agent with a non-empty 'request'")
        messages = [Message(role="system", content=agent.instructions), Message(role="user", content=request)]
        result = await self._run_agent(agent, path, messages, state)
        answer = render_answer(result)
        return answer, (AgentResult(answer=answer, return_direct=True) if agent.return_direct else None)


@dataclass(frozen=True, kw_only=True)
class _SubagentTool:
    """A sub-agent as the gateway sees it: a read-only tool with its request schema, run by the engine."""

    name: str
    description: str
    parameters: dict[str, Any]
    owner: str
    side_effect: SideEffect = "read"
    timeout_s: float | None = None
    credentials: tuple[CredentialRef, ...] = ()
    needs_approval: bool = False

    @staticmethod
    def of(target: GatewayTool | Agent) -> GatewayTool:
        if not isinstance(target, Agent):
            return target
        spec = subagent_spec(target)
        return _SubagentTool(name=spec.name, description=spec.description, parameters=spec.parameters, owner="agent")

    async def invoke(self, arguments: dict[str, Any], context: CallContext) -> Any:
        raise NotImplementedError("the engine runs sub-agents itself")


class _UnknownTool(_SubagentTool):
    """A name the model called that no granted tool has: the gateway denies and audits it."""

    def __init__(self, name: str) -> None:
        super().__init__(name=name, description="", parameters={"type": "object"}, owner="")


def _visible(specs: Sequence[ToolSpec], activated: dict[str, None]) -> tuple[ToolSpec, ...]:
    """What a searching agent's model is shown: ``find_tools``, then the tools activated so far in their order."""
    by_name = {s.name: s for s in specs}
    return (FIND_TOOLS_SPEC, *(by_name[name] for name in activated if name in by_name))


def _replayed_model_call(recorded: Step) -> tuple[Message, dict[str, Any] | None, Usage]:
    output = recorded.output
    usage = output.get("usage") or {}
    return (
        Message.from_dict(output["message"]),
        output.get("structured"),
        Usage(input_tokens=int(usage.get("input_tokens", 0)), output_tokens=int(usage.get("output_tokens", 0))),
    )


def render_answer(result: AgentResult) -> str:
    """The reply text of an answer: the answer, then its cited sources, if any."""
    sources = (result.structured or {}).get("sources")
    if isinstance(sources, list) and sources:
        cited = ", ".join(dict.fromkeys(str(s) for s in sources))
        return f"{result.answer.strip()}\n\nSources: {cited}"
    return result.answer


def _tool_output(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    if len(text) > _MAX_TOOL_OUTPUT_CHARS:
        return text[:_MAX_TOOL_OUTPUT_CHARS] + f"\n[truncated {len(text) - _MAX_TOOL_OUTPUT_CHARS} characters]"
    return text
