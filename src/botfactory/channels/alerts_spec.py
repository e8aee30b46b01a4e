"""The alerts API's responses and operations, for the OpenAPI document."""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel

from botfactory.channels.openapi import ApiResponse, Operation, QueryParam

__all__ = ["ALERTS_OPERATIONS"]


class Alert(BaseModel):
    """An alert a rule raised: open until its condition clears or an operator resolves it."""

    id: str
    rule: str
    kind: str
    subject: str
    severity: str
    message: str
    data: dict[str, Any]
    status: str
    created_at: float
    resolved_at: float | None


class AlertList(BaseModel):
    """Alerts, newest first."""

    alerts: list[Alert]


class ReleaseOutcome(BaseModel):
    """A session released from quarantine (``released`` is false when it was not quarantined)."""

    session_id: str
    released: bool
    status: str


_OPERATORS: Final = "Needs a local request or an API key for every bot (403 for a key limited to one bot)."

ALERTS_OPERATIONS: Final[tuple[Operation, ...]] = (
    Operation(
        method="GET",
        path="/v1/alerts",
        operation_id="listAlerts",
        summary="Alerts raised by the alert rules",
        description="Time to first token, spend, tool error rates and safety flags, newest first. " + _OPERATORS,
        tag="alerts",
        errors=(403,),
        params=(
            QueryParam(
                name="status",
                description="`open` (default), `resolved` or `all`.",
                schema={"type": "string", "enum": ["open", "resolved", "all"]},
            ),
            QueryParam(
                name="kind",
                description="Only alerts of this kind.",
                schema={"type": "string", "enum": ["ttft", "spend", "tool_errors", "safety"]},
            ),
            QueryParam(
                name="limit",
                description="At most this many (1-1000, default 100).",
                schema={"type": "string", "pattern": "^[0-9]{1,4}$"},
            ),
        ),
        responses={200: ApiResponse(description="The alerts.", model=AlertList)},
    ),
    Operation(
        method="POST",
        path="/v1/alerts/{alert_id}/resolve",
        operation_id="resolveAlert",
        summary="Resolve an alert",
        description=(
            "A condition that still holds raises a new alert at the next evaluation. Resolving a safety alert does "
            "not release its session: use `POST /v1/sessions/{session_id}/release`. " + _OPERATORS
        ),
        tag="alerts",
        errors=(403, 409),
        responses={200: ApiResponse(description="The resolved alert.", model=Alert)},
    ),
    Operation(
        method="POST",
        path="/v1/sessions/{session_id}/release",
        operation_id="releaseSession",
        summary="Release a quarantined session",
        description=(
            "The session takes messages again, its queued messages are answered, and its open safety alerts are "
            "resolved. " + _OPERATORS
        ),
        tag="sessions",
        errors=(403,),
        responses={200: ApiResponse(description="The session is active.", model=ReleaseOutcome)},
    ),
)
