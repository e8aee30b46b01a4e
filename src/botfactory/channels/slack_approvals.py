"""Approvals in Slack: the request is posted in the thread with Approve and Deny buttons; a click decides it.

The click arrives signed at ``POST /slack/interactions``; the clicking user (``slack:<team>:<user>``) must be one of
the bot's ``[gateway.approvers]`` and not the requester. The message is then updated to show the decision, and
the waiting turn resumes on any worker. A refused click gets an ephemeral explanation, seen only by that user.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any, Final

from botfactory.channels._slack_apps import SlackAction
from botfactory.errors import ConflictError, ForbiddenError, NotFoundError
from botfactory.runtime import Runtime
from botfactory.store import ApprovalRecord

__all__ = ["APPROVAL_ACTION_PREFIX", "APPROVE_ACTION", "DENY_ACTION", "approval_blocks", "decided_blocks"]

logger = logging.getLogger(__name__)

APPROVAL_ACTION_PREFIX: Final = "botfactory.approval."
APPROVE_ACTION: Final = APPROVAL_ACTION_PREFIX + "approve"
DENY_ACTION: Final = APPROVAL_ACTION_PREFIX + "deny"
_MAX_ARGUMENTS_CHARS: Final = 1500


def _who(principal: str | None) -> str:
    """A Slack mention for ``slack:<team>:<user>``, else the principal as text."""
    if principal and principal.startswith("slack:") and principal.count(":") == 2:
        return f"<@{principal.rsplit(':', 1)[1]}>"
    return principal or "someone"


def approval_text(approval: ApprovalRecord) -> str:
    """The request in one line (the notification text, and what clients without blocks show)."""
    return f"Approval needed: {approval.agent_path} wants to call {approval.tool} for {_who(approval.requester)}"


def approval_blocks(approval: ApprovalRecord) -> list[dict[str, Any]]:
    """The request with its arguments, expiry, and Approve / Deny buttons carrying the request's id."""
    arguments = json.dumps(approval.arguments, indent=2, ensure_ascii=False)[:_MAX_ARGUMENTS_CHARS]
    expires = dt.datetime.fromtimestamp(approval.expires_at, tz=dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return [
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": f"*{approval_text(approval)}*\n```{arguments}```\nExpires {expires} if nobody decides.",
            },
        },
        {
            "type": "actions",
            "block_id": f"approval:{approval.id}",
            "elements": [
                {
                    "type": "button",
                    "action_id": APPROVE_ACTION,
                    "text": {"type": "plain_text", "text": "Approve"},
                    "style": "primary",
                    "value": approval.id,
                },
                {
                    "type": "button",
                    "action_id": DENY_ACTION,
                    "text": {"type": "plain_text", "text": "Deny"},
                    "style": "danger",
                    "value": approval.id,
                },
            ],
        },
    ]


def decided_text(approval: ApprovalRecord) -> str:
    """The request's message once decided: who decided what (the buttons are gone)."""
    verdict = {"approved": "Approved", "denied": "Denied", "expired": "Expired"}.get(approval.status, approval.status)
    by = f" by {_who(approval.decided_by)}" if approval.decided_by else ""
    because = f": {approval.reason}" if approval.reason else ""
    return f"{verdict}{by}{because} — {approval.agent_path} calling {approval.tool} for {_who(approval.requester)}"


def decided_blocks(approval: ApprovalRecord) -> list[dict[str, Any]]:
    """The decided request as blocks (no buttons)."""
    return [{"type": "section", "text": {"type": "mrkdwn", "text": decided_text(approval)}}]


async def handle_approval_click(action: SlackAction, runtime: Runtime) -> ApprovalRecord | str:
    """Decide the request a button names, as the clicking user; the decided request, or why it was refused.

    Never raises for a refusal (not an approver, already decided, unknown request): the caller tells the user.
    """
    approve = action.action_id == APPROVE_ACTION
    if action.value is None or action.action_id not in (APPROVE_ACTION, DENY_ACTION):
        return "this button does not name an approval request"
    approver = f"slack:{action.team}:{action.user}"
    try:
        approval = await runtime.approval(action.value)
        if approval.bot != action.bot:
            return f"this Slack app answers for bot {action.bot}, not {approval.bot}"
        runtime.check_approver(approval, approver)
        return await runtime.decide_approval(approval.id, approve=approve, by=approver)
    except (ForbiddenError, ConflictError, NotFoundError) as exc:
        logger.info("approval_id=<%s>, by=<%s> | approval click refused: %s", action.value, approver, exc.message)
        return exc.message
