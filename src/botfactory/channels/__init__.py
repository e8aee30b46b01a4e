"""Channels: how the outside world reaches bots. They verify and normalise input and hold no business logic."""

from botfactory.channels.agentcore import agentcore_routes
from botfactory.channels.agentcore_spec import AGENTCORE_OPERATIONS
from botfactory.channels.http import InvokeBody, http_routes, read_json
from botfactory.channels.http_spec import HTTP_OPERATIONS
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
from botfactory.channels.slack_spec import SLACK_OPERATIONS

__all__ = [
    "AGENTCORE_OPERATIONS",
    "BOT_HEADER",
    "HTTP_OPERATIONS",
    "OPENAI_OPERATIONS",
    "SESSION_HEADER",
    "SLACK_CHANNEL",
    "SLACK_OPERATIONS",
    "ApiResponse",
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
    "agentcore_routes",
    "http_routes",
    "openai_routes",
    "openapi_document",
    "read_json",
    "slack_routes",
    "slack_session_id",
    "verify_slack_signature",
]
