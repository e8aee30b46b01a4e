"""Channels: how the outside world reaches bots. They verify and normalise input and hold no business logic."""

from botfactory.channels.a2a import A2A_CARD_PATH, A2A_PREFIX, a2a_available, a2a_routes
from botfactory.channels.a2a_spec import A2A_OPERATIONS
from botfactory.channels.agentcore import agentcore_routes
from botfactory.channels.agentcore_spec import AGENTCORE_OPERATIONS
from botfactory.channels.alerts_api import alerts_routes
from botfactory.channels.alerts_spec import ALERTS_OPERATIONS
from botfactory.channels.approvals_api import approvals_routes
from botfactory.channels.approvals_spec import APPROVALS_OPERATIONS
from botfactory.channels.audit_api import audit_routes
from botfactory.channels.audit_spec import AUDIT_OPERATIONS
from botfactory.channels.costs_api import CostReport, cost_report, costs_routes, since_day, utc_today
from botfactory.channels.costs_spec import COSTS_OPERATIONS
from botfactory.channels.http import InvokeBody, http_routes, read_json
from botfactory.channels.http_spec import HTTP_OPERATIONS
from botfactory.channels.mcp_endpoint import MCP_CHANNEL, MCP_PATH, mcp_routes
from botfactory.channels.metrics_api import METRICS_PATH, metrics_routes
from botfactory.channels.metrics_spec import METRICS_OPERATIONS
from botfactory.channels.openai_compat import BOT_HEADER, SESSION_HEADER, openai_routes
from botfactory.channels.openai_spec import OPENAI_OPERATIONS
from botfactory.channels.openapi import ApiResponse, Operation, QueryParam, openapi_document
from botfactory.channels.slack import (
    SLACK_CHANNEL,
    SignatureError,
    SlackAction,
    SlackActionHandler,
    SlackApp,
    SlackApps,
    SlackDeliverer,
    SlackIdentity,
    SlackInteractions,
    slack_routes,
    slack_session_id,
    verify_slack_signature,
)
from botfactory.channels.slack_approvals import APPROVAL_ACTION_PREFIX, APPROVE_ACTION, DENY_ACTION
from botfactory.channels.slack_delivery import approval_click_handler
from botfactory.channels.slack_spec import SLACK_OPERATIONS

__all__ = [
    "A2A_CARD_PATH",
    "A2A_OPERATIONS",
    "A2A_PREFIX",
    "AGENTCORE_OPERATIONS",
    "ALERTS_OPERATIONS",
    "APPROVALS_OPERATIONS",
    "APPROVAL_ACTION_PREFIX",
    "APPROVE_ACTION",
    "AUDIT_OPERATIONS",
    "BOT_HEADER",
    "COSTS_OPERATIONS",
    "DENY_ACTION",
    "HTTP_OPERATIONS",
    "MCP_CHANNEL",
    "MCP_PATH",
    "METRICS_OPERATIONS",
    "METRICS_PATH",
    "OPENAI_OPERATIONS",
    "SESSION_HEADER",
    "SLACK_CHANNEL",
    "SLACK_OPERATIONS",
    "ApiResponse",
    "CostReport",
    "InvokeBody",
    "Operation",
    "QueryParam",
    "SignatureError",
    "SlackAction",
    "SlackActionHandler",
    "SlackApp",
    "SlackApps",
    "SlackDeliverer",
    "SlackIdentity",
    "SlackInteractions",
    "a2a_available",
    "a2a_routes",
    "agentcore_routes",
    "alerts_routes",
    "approval_click_handler",
    "approvals_routes",
    "audit_routes",
    "cost_report",
    "costs_routes",
    "http_routes",
    "mcp_routes",
    "metrics_routes",
    "openai_routes",
    "openapi_document",
    "read_json",
    "since_day",
    "slack_routes",
    "slack_session_id",
    "utc_today",
    "verify_slack_signature",
]
