"""The durable runtime: inbox, workers with leases, durable turns, outbox, cancellation, limits and budgets."""

from botfactory.runtime.limits import KILL_SWITCH_KINDS, Controls, KillSwitchKind, TurnLimits, utc_day
from botfactory.runtime.outbox import Deliverer, DeliveryError, OutboxDispatcher
from botfactory.runtime.resources import SessionResources
from botfactory.runtime.service import EventCallback, InvokeResult, Runtime, SessionView
from botfactory.runtime.signals import Pulse, Signals
from botfactory.runtime.stack import RuntimeStack, start_runtime
from botfactory.runtime.tools import build_gateway, load_policies, start_tool_sources, walk_agents
from botfactory.runtime.worker import Worker

__all__ = [
    "KILL_SWITCH_KINDS",
    "Controls",
    "Deliverer",
    "DeliveryError",
    "EventCallback",
    "InvokeResult",
    "KillSwitchKind",
    "OutboxDispatcher",
    "Pulse",
    "Runtime",
    "RuntimeStack",
    "SessionResources",
    "SessionView",
    "Signals",
    "TurnLimits",
    "Worker",
    "build_gateway",
    "load_policies",
    "start_runtime",
    "start_tool_sources",
    "utc_day",
    "walk_agents",
]
