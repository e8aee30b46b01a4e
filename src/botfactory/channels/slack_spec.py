"""Slack's two routes for the OpenAPI document (served when Slack is configured; signed, so no API key)."""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel, ConfigDict

from botfactory.channels.openapi import ApiResponse, Operation

__all__ = ["SLACK_OPERATIONS"]

_SIGNED: Final = (
    "Signed by Slack: `X-Slack-Request-Timestamp` within 300 s and `X-Slack-Signature` (v0 HMAC-SHA256 of "
    "the raw body with the app's signing secret); anything else is refused with 401."
)


class SlackEnvelope(BaseModel):
    """An Events API request: ``url_verification`` or an ``event_callback`` (other fields as Slack sends them)."""

    model_config = ConfigDict(extra="allow")

    type: str


class SlackInteractionForm(BaseModel):
    """An interactive request: the form field ``payload`` holds the interaction as JSON."""

    payload: str


class SlackAck(BaseModel):
    """Received; any turn runs later and its reply is posted in the thread."""

    ok: bool


SLACK_OPERATIONS: Final[tuple[Operation, ...]] = (
    Operation(
        method="POST",
        path="/slack/events",
        operation_id="slackEvents",
        summary="Slack Events API",
        description=_SIGNED + " A human message is queued (one turn per message, whatever Slack repeats) and "
        "acknowledged at once; `url_verification` is answered with its challenge as text.",
        tag="slack",
        body=SlackEnvelope,
        public=True,
        responses={200: ApiResponse(description="Acknowledged.", model=SlackAck, alternatives=("text/plain",))},
    ),
    Operation(
        method="POST",
        path="/slack/interactions",
        operation_id="slackInteractions",
        summary="Slack interactive payloads (buttons)",
        description=_SIGNED + " Each `block_actions` action goes to the handler registered for its `action_id`.",
        tag="slack",
        body=SlackInteractionForm,
        body_media_type="application/x-www-form-urlencoded",
        public=True,
        responses={200: ApiResponse(description="Acknowledged (empty body).")},
    ),
)
