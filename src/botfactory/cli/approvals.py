"""Requests for a person's approval of tool calls: ``botfactory approvals list|approve|deny``.

Deciding from the CLI is trusted (it needs the database); the decision is recorded as ``cli:<os user>`` and the
waiting turn resumes on any worker.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
from typing import cast

import click
from rich.table import Table
from rich.text import Text

from botfactory.cli._output import console, print_json
from botfactory.cli.main import cli
from botfactory.cli.runtime import _with_runtime
from botfactory.runtime import Runtime
from botfactory.store import ApprovalRecord, ApprovalStatus

__all__ = ["approver_name"]


def approver_name() -> str:
    """Who decides from this terminal: ``cli:<os user>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


@cli.group()
def approvals() -> None:
    """Tool calls waiting for a person's approval, and the decisions made."""


@approvals.command("list")
@click.option(
    "--status",
    type=click.Choice(["pending", "approved", "denied", "expired", "all"]),
    default="pending",
    show_default=True,
)
@click.option("--bot", default=None, help="Only this bot's requests.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def approvals_list(status: str, bot: str | None, as_json: bool) -> None:
    """List requests for approval, newest first."""
    wanted = None if status == "all" else cast(ApprovalStatus, status)
    found = _with_runtime(lambda runtime: runtime.approvals(status=wanted, bot=bot))
    if as_json:
        print_json([a.to_dict() for a in found])
        return
    if not found:
        console.print(f"no {'' if status == 'all' else status + ' '}approval requests")
        return
    table = Table("id", "bot / agent", "tool", "arguments", "requested by", "status", "expires / decided")
    for a in found:
        when = a.decided_at if a.decided_at is not None else a.expires_at
        stamp = dt.datetime.fromtimestamp(when, tz=dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        table.add_row(
            a.id,
            Text(a.agent_path),
            Text(a.tool),
            Text(json.dumps(a.arguments)[:60]),
            Text(a.requester or "-"),
            a.status + (f" by {a.decided_by}" if a.decided_by else ""),
            stamp,
        )
    console.print(table)


def _decide(approval_id: str, *, approve: bool, reason: str | None) -> ApprovalRecord:
    by = approver_name()

    async def decide(runtime: Runtime) -> ApprovalRecord:
        request = await runtime.approval(approval_id)
        runtime.check_approver(request, by, trusted=True)
        return await runtime.decide_approval(approval_id, approve=approve, by=by, reason=reason)

    return _with_runtime(decide)


@approvals.command("approve")
@click.argument("approval_id")
@click.option("--reason", default=None, help="Why; shown to the bot and kept with the decision.")
def approvals_approve(approval_id: str, reason: str | None) -> None:
    """Approve a waiting tool call; its turn resumes and the tool runs."""
    decided = _decide(approval_id, approve=True, reason=reason)
    console.print(f"approved {decided.tool} ({decided.id}); the turn resumes", markup=False)


@approvals.command("deny")
@click.argument("approval_id")
@click.option("--reason", default=None, help="Why; the bot is told.")
def approvals_deny(approval_id: str, reason: str | None) -> None:
    """Deny a waiting tool call; its turn resumes without running it."""
    decided = _decide(approval_id, approve=False, reason=reason)
    console.print(f"denied {decided.tool} ({decided.id}); the turn resumes", markup=False)
