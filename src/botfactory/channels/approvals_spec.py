"""The approvals API's responses and operations, for the OpenAPI document."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from botfactory.channels.approvals_api import DecisionBody
from botfactory.channels.openapi import ApiResponse, Operation, QueryParam

__all__ = ["APPROVALS_OPERATIONS"]


class Approval(BaseModel):
    """A request for a person's approval of one tool call, and its decision once made."""

    id: str
    session_id: str
    turn_id: str
    bot: str
    agent_path: str
    tool: str
    arguments: dict[str, Any]
    requester: str | None
    status: str
    decided_by: str | None
    reason: str | None
    created_at: float
    expires_at: float
    decided_at: float | None


class ApprovalList(BaseModel):
    """Requests for approval, newest first."""

    approvals: list[Approval]


_WHO = (
    "A local request or an API key that may use the bot decides; a JWT caller must be in `[gateway.approvers]`. "
    "Nobody decides their own request."
)

APPROVALS_OPERATIONS = (
    Operation(
        method="GET",
        path="/v1/approvals",
        operation_id="listApprovals",
        summary="Requests for approval",
        description="A key limited to one bot sees only that bot's requests.",
        tag="approvals",
        errors=(403,),
        params=(
            QueryParam(
                name="status",
                description="Only requests in this state.",
                schema={"type": "string", "enum": ["pending", "approved", "denied", "expired"]},
            ),
            QueryParam(name="bot", description="Only this bot's requests."),
        ),
        responses={200: ApiResponse(description="The requests.", model=ApprovalList)},
    ),
    Operation(
        method="GET",
        path="/v1/approvals/{approval_id}",
        operation_id="getApproval",
        summary="One request for approval",
        tag="approvals",
        errors=(403,),
        responses={200: ApiResponse(description="The request.", model=Approval)},
    ),
    Operation(
        method="POST",
        path="/v1/approvals/{approval_id}",
        operation_id="decideApproval",
        summary="Approve or deny a tool call",
        description="The waiting turn resumes on any worker. " + _WHO,
        tag="approvals",
        body=DecisionBody,
        errors=(403, 409),
        responses={200: ApiResponse(description="The decided request.", model=Approval)},
    ),
)
