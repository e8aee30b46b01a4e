"""The audit API's responses and operation, for the OpenAPI document."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from botfactory.channels.openapi import ApiResponse, Operation, QueryParam

__all__ = ["AUDIT_OPERATIONS"]


class AuditEntry(BaseModel):
    """One tool call the gateway decided."""

    id: str
    at: float
    principal: str | None
    bot: str
    agent_path: str
    tool: str
    arguments: dict[str, Any]
    decision: str
    reasons: list[str]
    approval: str | None
    outcome: str
    error: str | None
    duration_ms: float
    session_id: str | None
    turn_id: str | None
    position: int | None
    trace_id: str | None


class AuditPage(BaseModel):
    """Audit entries, newest first, and the cursor of the next page (``null``: no more)."""

    entries: list[AuditEntry]
    next: str | None


AUDIT_OPERATIONS = (
    Operation(
        method="GET",
        path="/v1/audit",
        operation_id="listAudit",
        summary="The audit log of tool calls",
        description=(
            "Every tool call the gateway decided: principal, bot, agent, tool, redacted arguments, decision and the "
            "policies behind it, outcome, duration, trace id. Newest first; page with `before`. A key limited to one "
            "bot sees only that bot's calls."
        ),
        tag="audit",
        errors=(403,),
        params=(
            QueryParam(name="tool", description="Only calls of this tool."),
            QueryParam(name="user", description="Only calls made for this principal, e.g. `slack:T1:U2`."),
            QueryParam(name="bot", description="Only this bot's calls."),
            QueryParam(name="session_id", description="Only this session's calls."),
            QueryParam(name="decision", description="`allow`, `deny`, `ask`, `would-deny` or `invalid`."),
            QueryParam(
                name="outcome", description="`ok`, `error`, `denied`, `rejected`, `rate_limited`, `timeout`, ..."
            ),
            QueryParam(
                name="since",
                description="Only calls at or after this time (epoch seconds).",
                schema={"type": "string", "pattern": "^[0-9]{1,12}(\\.[0-9]{1,6})?$"},
            ),
            QueryParam(
                name="before",
                description="The previous page's `next`.",
                schema={"type": "string", "pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"},
            ),
            QueryParam(
                name="limit",
                description="At most this many (1-1000, default 100).",
                schema={"type": "string", "pattern": "^[0-9]{1,4}$"},
            ),
        ),
        responses={200: ApiResponse(description="A page of the audit log.", model=AuditPage)},
    ),
)
