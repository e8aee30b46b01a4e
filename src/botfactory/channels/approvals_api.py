"""``/v1/approvals``: list requests for approval and decide them; the waiting turn resumes on any worker.

Who may decide: a local request, or an API key that may use the request's bot; a JWT caller must be named in
``[gateway.approvers]``. Nobody decides their own request.
"""

from __future__ import annotations

import re
from typing import Final, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from botfactory.channels._access import check_bot_allowed, key_bot, principal_of
from botfactory.channels.http import read_json
from botfactory.errors import InvalidFieldError, InvalidInputError
from botfactory.runtime import Runtime
from botfactory.store import ApprovalRecord, ApprovalStatus

__all__ = ["DecisionBody", "approvals_routes"]

_ID: Final = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_STATUSES: Final = ("pending", "approved", "denied", "expired")
_MAX_BODY: Final = 16 * 1024


class DecisionBody(BaseModel):
    """Body of ``POST /v1/approvals/{id}``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    decision: Literal["approve", "deny"]
    reason: str | None = Field(default=None, max_length=2000)


def approvals_routes(runtime: Runtime) -> list[BaseRoute]:
    """The approvals API's routes."""

    async def list_approvals(request: Request) -> Response:
        status = request.query_params.get("status")
        if status is not None and status not in _STATUSES:
            raise InvalidFieldError(f"status must be one of {', '.join(_STATUSES)}", param="status")
        bot = request.query_params.get("bot")
        if bot is not None:
            check_bot_allowed(request, bot)
        else:
            bot = key_bot(request)
        found = await runtime.approvals(status=cast(ApprovalStatus | None, status), bot=bot)
        return JSONResponse({"approvals": [a.to_dict() for a in found]})

    async def get_approval(request: Request) -> Response:
        return JSONResponse((await _visible(request, runtime)).to_dict())

    async def decide(request: Request) -> Response:
        approval = await _visible(request, runtime)
        data = await read_json(request, max_bytes=_MAX_BODY)
        if not isinstance(data, dict):
            raise InvalidInputError('the request body must be a JSON object like {"decision": "approve"}')
        try:
            body = DecisionBody.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors())
            raise InvalidInputError(f"invalid request body ({problems})") from None
        approver, trusted = _approver(request)
        runtime.check_approver(approval, approver, trusted=trusted)
        decided = await runtime.decide_approval(
            approval.id, approve=body.decision == "approve", by=approver, reason=body.reason
        )
        return JSONResponse(decided.to_dict())

    return [
        Route("/v1/approvals", list_approvals, methods=["GET"]),
        Route("/v1/approvals/{approval_id}", get_approval, methods=["GET"]),
        Route("/v1/approvals/{approval_id}", decide, methods=["POST"]),
    ]


async def _visible(request: Request, runtime: Runtime) -> ApprovalRecord:
    approval_id: str = request.path_params["approval_id"]
    if not _ID.match(approval_id):
        raise InvalidFieldError("the approval id must be a UUID, as `GET /v1/approvals` lists them", param="id")
    approval = await runtime.approval(approval_id)
    check_bot_allowed(request, approval.bot)
    return approval


def _approver(request: Request) -> tuple[str, bool]:
    """Who is deciding, and whether their credentials alone allow it (local use, an API key for the bot)."""
    principal = principal_of(request)
    if principal is None or principal.kind == "local":
        return "local", True
    if principal.kind == "api_key":
        return f"key:{principal.key_id}", True
    return principal.user_id or f"{principal.kind}:unknown", False
