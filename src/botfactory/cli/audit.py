"""The audit log of tool calls: ``botfactory audit list``."""

from __future__ import annotations

import datetime as dt

import click
from rich.table import Table
from rich.text import Text

from botfactory.cli._output import console, print_json
from botfactory.cli.main import cli, load_settings, run_async
from botfactory.errors import InvalidInputError
from botfactory.store import AuditQuery, AuditRecord, AuditStore, Store

__all__ = ["parse_since"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def parse_since(value: str, *, now: float) -> float:
    """``30m``, ``2h``, ``7d`` ago, or an epoch time, as epoch seconds.

    Raises:
        InvalidInputError: neither form.
    """
    text = value.strip().lower()
    try:
        if text and text[-1] in _UNITS:
            amount = float(text[:-1])
            if amount < 0:
                raise ValueError
            return now - amount * _UNITS[text[-1]]
        return float(text)
    except ValueError:
        raise InvalidInputError(
            f"--since must be a duration such as 30m, 2h or 7d, or epoch seconds; not {value!r}"
        ) from None


@cli.group()
def audit() -> None:
    """The audit log: every tool call the gateway decided."""


@audit.command("list")
@click.option("--tool", default=None, help="Only calls of this tool.")
@click.option("--user", default=None, help="Only calls made for this principal, e.g. slack:T1:U2.")
@click.option("--bot", default=None, help="Only this bot's calls.")
@click.option("--session", "session_id", default=None, help="Only this session's calls.")
@click.option(
    "--decision", type=click.Choice(["allow", "deny", "ask", "would-deny", "invalid"]), default=None, help="Only these."
)
@click.option("--outcome", default=None, help="ok, error, denied, rejected, rate_limited, timeout, ...")
@click.option("--since", default=None, help="Only calls since: 30m, 2h, 7d, or epoch seconds.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def audit_list(
    tool: str | None,
    user: str | None,
    bot: str | None,
    session_id: str | None,
    decision: str | None,
    outcome: str | None,
    since: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List audited tool calls, newest first."""
    query = AuditQuery(
        tool=tool,
        principal=user,
        bot=bot,
        session_id=session_id,
        decision=decision,
        outcome=outcome,
        since=parse_since(since, now=dt.datetime.now(dt.UTC).timestamp()) if since else None,
        limit=limit,
    )

    async def read() -> list[AuditRecord]:
        async with await Store.open(load_settings().resolved_database_url) as store:
            return await AuditStore(store.engine).list(query)

    records = run_async(read())
    if as_json:
        print_json([record.to_dict() for record in records])
        return
    if not records:
        console.print("no audited tool calls match")
        return
    table = Table("when", "user", "bot / agent", "tool", "decision", "outcome", "ms", "reasons / error")
    for r in records:
        when = dt.datetime.fromtimestamp(r.at, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        detail = r.error or ", ".join(r.reasons)
        table.add_row(
            when,
            Text(r.principal or "-"),
            Text(r.agent_path),
            Text(r.tool),
            r.decision,
            r.outcome,
            f"{r.duration_ms:.1f}",
            Text(detail[:80]),
        )
    console.print(table)
