"""What the AgentCore contract's responses look like, and its operations for the OpenAPI document."""

from __future__ import annotations

from typing import Final, Literal

from pydantic import BaseModel

from botfactory.channels.agentcore import (
    AGENTCORE_BOT_HEADER,
    AGENTCORE_REQUEST_HEADER,
    AGENTCORE_SESSION_HEADER,
    InvocationBody,
)
from botfactory.channels.openapi import ApiResponse, Operation, QueryParam

__all__ = ["AGENTCORE_OPERATIONS"]


class InvocationResult(BaseModel):
    """How the message's turn ended; ``result`` is the reply."""

    result: str
    session_id: str
    turn_id: str | None
    status: str
    error_code: str | None


class PingStatus(BaseModel):
    """``HealthyBusy`` while this process runs turns; when the status last changed (unix seconds)."""

    status: Literal["Healthy", "HealthyBusy"]
    time_of_last_update: int


AGENTCORE_OPERATIONS: Final[tuple[Operation, ...]] = (
    Operation(
        method="POST",
        path="/invocations",
        operation_id="agentcoreInvoke",
        summary="Invoke a bot through the AgentCore runtime contract",
        description="The bot is `agentcore_bot` unless the custom bot header names another. JSON by default; with "
        "`Accept: text/event-stream` every engine event is a `data:` line, then the result (or "
        '`{"error", "error_type"}`).',
        tag="agentcore",
        body=InvocationBody,
        params=(
            QueryParam(
                name=AGENTCORE_SESSION_HEADER,
                location="header",
                description="The session, 33 to 256 characters; without it a new one is started and returned.",
                schema={"type": "string", "minLength": 33, "maxLength": 256},
            ),
            QueryParam(name=AGENTCORE_BOT_HEADER, location="header", description="The bot to talk to."),
            QueryParam(
                name=AGENTCORE_REQUEST_HEADER,
                location="header",
                description="Makes the call idempotent: a retry with the same id is answered by the same turn.",
            ),
        ),
        errors=(403, 404, 409, 429, 504),
        responses={
            200: ApiResponse(
                description="The turn ended (or its event stream).",
                model=InvocationResult,
                event_stream=True,
                headers={AGENTCORE_SESSION_HEADER: "The session: send it back to continue the conversation."},
            )
        },
    ),
    Operation(
        method="GET",
        path="/ping",
        operation_id="agentcorePing",
        summary="AgentCore health: Healthy, or HealthyBusy while turns run",
        tag="agentcore",
        public=True,
        responses={200: ApiResponse(description="The status.", model=PingStatus)},
    ),
)
