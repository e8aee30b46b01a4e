"""Operating pages: approvals (approve or deny), dead letters (retry or discard)."""

from __future__ import annotations

import logging
import re
from typing import Final

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from botfactory.console._core import PREFIX, ConsoleState, Viewer, form
from botfactory.errors import InvalidInputError, NotFoundError
from botfactory.store import ApprovalRecord

__all__ = ["operate_routes"]

logger = logging.getLogger(__name__)

_UUID: Final = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_DEAD_SCAN: Final = 1000
_MAX_REASON: Final = 2000


def operate_routes(state: ConsoleState) -> list[BaseRoute]:
    """The approvals and dead-letter pages' routes."""
    runtime = state.runtime

    async def approvals(request: Request, viewer: Viewer) -> Response:
        bot = viewer.principal.bot
        pending = await runtime.approvals(status="pending", bot=bot)
        recent = [a for a in await runtime.approvals(bot=bot, limit=50) if a.status != "pending"]
        return state.render(
            "approvals.html", viewer=viewer, page="approvals", pending=pending, recent=recent, now=state.clock()
        )

    async def _approval(request: Request, viewer: Viewer) -> ApprovalRecord:
        approval_id: str = request.path_params["approval_id"]
        if not _UUID.match(approval_id):
            raise NotFoundError(f"no approval request {approval_id[:40]!r}; pick one from the approvals list")
        approval = await runtime.approval(approval_id)
        if not viewer.allows(approval.bot):
            raise NotFoundError(f"no approval request {approval_id!r}; pick one from the approvals list")
        return approval

    async def decide(request: Request, viewer: Viewer) -> Response:
        approval = await _approval(request, viewer)
        fields = await form(request)
        decision = fields.get("decision")
        if decision not in ("approve", "deny"):
            raise InvalidInputError("choose approve or deny")
        reason = fields.get("reason", "").strip()[:_MAX_REASON] or None
        # The console's principals are trusted like the API's: a local request or an API key for this bot may
        # decide; an OpenID Connect user must be named in [gateway.approvers].
        runtime.check_approver(approval, viewer.name, trusted=viewer.principal.kind in ("local", "api_key"))
        decided = await runtime.decide_approval(
            approval.id, approve=decision == "approve", by=viewer.name, reason=reason
        )
        logger.info("approval_id=<%s>, status=<%s> | decided in the console", decided.id, decided.status)
        return RedirectResponse(f"{PREFIX}/approvals", status_code=303)

    async def dead_letters(request: Request, viewer: Viewer) -> Response:
        found = await runtime.dead_letters(bot=viewer.principal.bot, limit=200)
        return state.render("dead_letters.html", viewer=viewer, page="dead-letters", dead=found)

    async def _check_dead(request: Request, viewer: Viewer) -> str:
        """The path's dead message id, refused as unknown when it belongs to a bot the viewer may not see."""
        message_id: str = request.path_params["message_id"]
        if viewer.principal.bot is not None:
            visible = await runtime.dead_letters(bot=viewer.principal.bot, limit=_DEAD_SCAN)
            if not any(item.message_id == message_id for item in visible):
                raise NotFoundError(f"no dead letter {message_id[:40]!r}; pick one from the dead letters")
        return message_id

    async def retry(request: Request, viewer: Viewer) -> Response:
        dead = await runtime.retry_dead_letter(await _check_dead(request, viewer))
        logger.info("message_id=<%s>, by=<%s> | dead letter queued again", dead.message_id, viewer.name)
        return RedirectResponse(f"{PREFIX}/dead-letters", status_code=303)

    async def discard(request: Request, viewer: Viewer) -> Response:
        dead = await runtime.discard_dead_letter(await _check_dead(request, viewer))
        logger.info("message_id=<%s>, by=<%s> | dead letter discarded", dead.message_id, viewer.name)
        return RedirectResponse(f"{PREFIX}/dead-letters", status_code=303)

    return [
        Route(f"{PREFIX}/approvals", state.guard(approvals), methods=["GET"]),
        Route(PREFIX + "/approvals/{approval_id}", state.guard(decide), methods=["POST"]),
        Route(f"{PREFIX}/dead-letters", state.guard(dead_letters), methods=["GET"]),
        Route(PREFIX + "/dead-letters/{message_id}/retry", state.guard(retry), methods=["POST"]),
        Route(PREFIX + "/dead-letters/{message_id}/discard", state.guard(discard), methods=["POST"]),
    ]
