"""Events a running turn emits, including those from inside sub-agents, for callers to stream."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from botfactory.messages import Usage

__all__ = [
    "AgentFinished",
    "Event",
    "ModelCallFinished",
    "ModelCallStarted",
    "ToolCallFinished",
    "ToolCallStarted",
]


@dataclass(frozen=True, kw_only=True)
class Event:
    """Common fields: the turn, and the path of the agent that emitted it (``support/github``)."""

    turn_id: str
    agent_path: str

    @property
    def kind(self) -> str:
        """Stable name of the event type, e.g. ``tool_call_started``."""
        return _KINDS[type(self)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form with a ``type`` field."""
        data: dict[str, Any] = {"type": self.kind}
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, Usage):
                value = {"input_tokens": value.input_tokens, "output_tokens": value.output_tokens}
            data[field.name] = value
        return data


@dataclass(frozen=True, kw_only=True)
class ModelCallStarted(Event):
    """A model call is about to be made."""

    position: int
    model: str


@dataclass(frozen=True, kw_only=True)
class ModelCallFinished(Event):
    """A model call returned."""

    position: int
    model: str
    usage: Usage
    latency_s: float


@dataclass(frozen=True, kw_only=True)
class ToolCallStarted(Event):
    """A tool or sub-agent is about to run."""

    position: int
    tool: str
    arguments: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class ToolCallFinished(Event):
    """A tool or sub-agent returned (``ok``) or failed; ``output`` is what the model sees, shortened."""

    position: int
    tool: str
    ok: bool
    output: str
    latency_s: float


@dataclass(frozen=True, kw_only=True)
class AgentFinished(Event):
    """An agent produced its final answer."""

    answer: str


_KINDS: dict[type[Event], str] = {
    Event: "event",
    ModelCallStarted: "model_call_started",
    ModelCallFinished: "model_call_finished",
    ToolCallStarted: "tool_call_started",
    ToolCallFinished: "tool_call_finished",
    AgentFinished: "agent_finished",
}
