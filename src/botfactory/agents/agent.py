"""The authoring model: an agent is instructions, a model alias, and the tools it may use."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from botfactory.agents.tool import Tool
from botfactory.gateway import GatewayTool, ToolSource
from botfactory.messages import ToolSpec

__all__ = ["Agent"]

_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


@dataclass(kw_only=True, eq=False)
class Agent:
    """An LLM-driven agent.

    Attributes:
        name: Lower-case identifier, unique among the tools of any agent that uses this one.
        instructions: The system prompt. Keep it stable: local models cache the prompt prefix.
        model: Model alias from settings (``small``, ``large`` or your own).
        description: What this agent does, shown to a parent agent that uses it as a tool.
        tools: Tools and sub-agents: ``@tool`` functions, other agents, any :class:`~botfactory.gateway.GatewayTool`
            and tool sources (an MCP server, an OpenAPI document) whose current tools are all given to the agent.
            A sub-agent is called as a tool with a ``request`` argument and runs with its own model and a fresh
            context. Every call passes the tool gateway; only these tools are granted to the agent.
        output_schema: JSON schema of the final answer: an object with a string ``answer`` property and
            optionally more (e.g. ``sources``). A ``sources`` list is appended to the reply as citations.
        max_steps: Maximum model calls of this agent within one turn.
        return_direct: When used as a sub-agent, its answer becomes the parent's final answer with no further
            parent model call (saves a model call and keeps citations verbatim).
        tool_choice: ``required``: the agent must use a tool before it may answer, so it cannot answer (or claim an
            action) without one; small models otherwise often answer from their own knowledge. A router whose tools
            are ``return_direct`` specialists can then never answer on its own.
        prefetch: One of ``tools``, run before the agent's first model call with the agent's request as its first
            required string argument; the model sees it as its own first tool call. Saves a model call for agents
            that always start the same way (retrieval before answering), and counts as using a tool.
        input: As a sub-agent, what it is given: ``request`` (the parent writes one) or ``user_message`` (the
            turn's user message, verbatim; the parent only chooses the agent). ``user_message`` suits routers:
            nothing is lost in paraphrase and the parent's call is a few tokens.
    """

    name: str
    instructions: str
    model: str = "large"
    description: str = ""
    tools: Sequence[Tool | Agent | GatewayTool | ToolSource] = field(default_factory=tuple)
    output_schema: dict[str, Any] | None = None
    max_steps: int = 6
    return_direct: bool = False
    tool_choice: Literal["auto", "required"] = "auto"
    prefetch: Tool | None = None
    input: Literal["request", "user_message"] = "request"

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"agent name {self.name!r} must match {_NAME.pattern}")
        if self.tool_choice == "required" and not self.tools:
            raise ValueError(f"agent {self.name!r} requires a tool call but has no tools")
        if self.prefetch is not None:
            if not any(t is self.prefetch for t in self.tools):
                raise ValueError(f"agent {self.name!r}: its prefetch tool must be one of its tools")
            prefetch_argument(self.prefetch)
        if self.max_steps < 1:
            raise ValueError("max_steps must be at least 1")
        names = [t.name for t in self.tools if not _is_source(t)]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"agent {self.name!r} has duplicate tool names: {', '.join(duplicates)}")
        if self.output_schema is not None:
            props = self.output_schema.get("properties", {})
            if self.output_schema.get("type") != "object" or props.get("answer", {}).get("type") != "string":
                raise ValueError(f"agent {self.name!r}: output_schema must be an object with a string 'answer'")

    @property
    def sources(self) -> tuple[ToolSource, ...]:
        """The tool sources among ``tools`` (started by the platform before the first turn)."""
        return tuple(cast(ToolSource, t) for t in self.tools if _is_source(t))

    def granted(self) -> tuple[GatewayTool | Agent, ...]:
        """Every tool and sub-agent this agent may call now: its own, and each source's current tools."""
        found: list[GatewayTool | Agent] = []
        for item in self.tools:
            if _is_source(item):
                found.extend(cast(ToolSource, item).tools)
            else:
                found.append(cast(GatewayTool | Agent, item))
        return tuple(found)

    def tool_specs(self) -> tuple[ToolSpec, ...]:
        """What the model is told about each tool and sub-agent."""
        return tuple(
            subagent_spec(t)
            if isinstance(t, Agent)
            else ToolSpec(name=t.name, description=t.description, parameters=t.parameters)
            for t in self.granted()
        )

    def find_tool(self, name: str) -> GatewayTool | Agent | None:
        """The tool or sub-agent with that name."""
        return next((t for t in self.granted() if t.name == name), None)


def _is_source(item: object) -> bool:
    """A tool source rather than a tool: it lists tools and has no argument schema of its own."""
    return not isinstance(item, Agent | Tool) and isinstance(item, ToolSource) and not hasattr(item, "parameters")


SUBAGENT_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "request": {"type": "string", "description": "The complete request for this specialist, in plain words."}
    },
    "required": ["request"],
    "additionalProperties": False,
}


def prefetch_argument(tool: GatewayTool) -> str:
    """The argument a prefetch tool receives the request in: its first required string parameter."""
    required = tool.parameters.get("required", [])
    for name in required:
        if tool.parameters["properties"][name].get("type") == "string":
            return str(name)
    raise ValueError(f"tool {tool.name!r} cannot prefetch: it has no required string argument for the request")


NO_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}


def subagent_spec(agent: Agent) -> ToolSpec:
    """A sub-agent as its parent's model sees it."""
    return ToolSpec(
        name=agent.name,
        description=agent.description or f"Ask the {agent.name} agent.",
        parameters=SUBAGENT_PARAMETERS if agent.input == "request" else NO_PARAMETERS,
    )
