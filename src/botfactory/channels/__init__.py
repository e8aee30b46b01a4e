"""Channels: how the outside world reaches bots. They verify and normalise input and hold no business logic."""

from botfactory.channels.http import InvokeBody, http_routes, read_json
from botfactory.channels.slack import (
    SLACK_CHANNEL,
    SignatureError,
    SlackApp,
    SlackDeliverer,
    slack_routes,
    slack_session_id,
    verify_slack_signature,
)

__all__ = [
    "SLACK_CHANNEL",
    "InvokeBody",
    "SignatureError",
    "SlackApp",
    "SlackDeliverer",
    "http_routes",
    "read_json",
    "slack_routes",
    "slack_session_id",
    "verify_slack_signature",
]
