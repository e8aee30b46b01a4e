"""The authoring model (``Agent``, ``tool``, ``Bot``) and the engine that runs a turn."""

from botfactory.agents.agent import Agent
from botfactory.agents.bot import Bot, BotContext, BotFactory, BotRegistry, DoubleTexting, load_bots_dir
from botfactory.agents.engine import (
    AgentResult,
    Engine,
    EventHandler,
    Step,
    StepRecorder,
    TurnGuard,
    TurnInput,
    TurnResult,
)
from botfactory.agents.events import (
    AgentFinished,
    Event,
    ModelCallFinished,
    ModelCallStarted,
    ToolCallFinished,
    ToolCallStarted,
)
from botfactory.agents.external import ContractAgent, ContractChunk, contract_agents, contract_session_id
from botfactory.agents.tool import Tool, ToolContext, tool
from botfactory.agents.tool_search import ToolSearch

__all__ = [
    "Agent",
    "AgentFinished",
    "AgentResult",
    "Bot",
    "BotContext",
    "BotFactory",
    "BotRegistry",
    "ContractAgent",
    "ContractChunk",
    "DoubleTexting",
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
    "ToolSearch",
    "TurnGuard",
    "TurnInput",
    "TurnResult",
    "contract_agents",
    "contract_session_id",
    "load_bots_dir",
    "tool",
]
