"""The authoring model (``Agent``, ``tool``, ``Bot``) and the engine that runs a turn."""

from botfactory.agents.agent import Agent
from botfactory.agents.bot import Bot, BotContext, BotFactory, BotRegistry, load_bots_dir
from botfactory.agents.engine import AgentResult, Engine, EventHandler, Step, StepRecorder, TurnInput, TurnResult
from botfactory.agents.events import (
    AgentFinished,
    Event,
    ModelCallFinished,
    ModelCallStarted,
    ToolCallFinished,
    ToolCallStarted,
)
from botfactory.agents.tool import Tool, ToolContext, tool

__all__ = [
    "Agent",
    "AgentFinished",
    "AgentResult",
    "Bot",
    "BotContext",
    "BotFactory",
    "BotRegistry",
    "Engine",
    "Event",
    "EventHandler",
    "ModelCallFinished",
    "ModelCallStarted",
    "Step",
    "StepRecorder",
    "Tool",
    "ToolCallFinished",
    "ToolCallStarted",
    "ToolContext",
    "TurnInput",
    "TurnResult",
    "load_bots_dir",
    "tool",
]
