"""Alerts and quarantines: ``botfactory alerts list|resolve`` and ``botfactory sessions release``.

Like the other runtime commands these open the store only (no models, no worker), from any host that reaches the
database; a release reaches every worker at once.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import cast

import click
from rich.table import Column, Table
from rich.text import Text

from botfactory.cli._output import console, print_json
from botfactory.cli.main import cli, load_settings, run_async
from botfactory.cli.runtime import open_runtime, sessions
from botfactory.errors import NotFoundError
from botfactory.store import AlertRecord, AlertStatus, Store, ThrottleRecord, ThrottleStore

__all__: list[str] = []


def _when(epoch_s: float | None) -> str:
    if epoch_s is None:
        return ""
    return dt.datetime.fromtimestamp(epoch_s, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


@cli.group()
def alerts() -> None:
    """Alerts raised by [[alerts.rules]]: time to first token, spend, tool errors, safety."""


@alerts.command("list")
@click.option(
    "--status",
    type=click.Choice(["open", "resolved", "all"]),
    default="open",
    show_default=True,
    help="Which alerts to list.",
)
@click.option("--kind", type=click.Choice(["ttft", "spend", "tool_errors", "safety"]), default=None, help="Only these.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def alerts_list(status: str, kind: str | None, limit: int, as_json: bool) -> None:
    """List alerts, newest first."""
    wanted = None if status == "all" else cast(AlertStatus, status)

    async def read() -> list[AlertRecord]:
        async with open_runtime() as runtime:
            return await runtime.list_alerts(status=wanted, kind=kind, limit=limit)

    found = run_async(read())
    if as_json:
        print_json([alert.to_dict() for alert in found])
        return
    if not found:
        console.print("no open alerts" if status == "open" else "no alerts")
        return
    table = Table(
        Column("id", no_wrap=True, min_width=36), "raised (UTC)", "rule", "kind", "severity", "status", "message"
    )
    for alert in found:
        table.add_row(
            alert.id,
            _when(alert.created_at),
            Text(alert.rule),
            alert.kind,
            alert.severity,
            alert.status,
            Text(alert.message),
        )
    console.print(table)


@alerts.command("resolve")
@click.argument("alert_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def alerts_resolve(alert_id: str, as_json: bool) -> None:
    """Mark an alert resolved (a safety alert's session stays quarantined: `botfactory sessions release`)."""

    async def resolve() -> AlertRecord:
        async with open_runtime() as runtime:
            return await runtime.resolve_alert(alert_id)

    resolved = run_async(resolve())
    if as_json:
        print_json(resolved.to_dict())
        return
    console.print(f"alert {resolved.id} ({resolved.rule}, {resolved.subject}) resolved", markup=False)


@alerts.command("throttles")
@click.option("--all", "show_all", is_flag=True, help="Include throttles that have ended.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def alerts_throttles(show_all: bool, as_json: bool) -> None:
    """List tools a tool_errors rule throttled: the gateway refuses them until the time shown."""

    async def read() -> list[ThrottleRecord]:
        async with await Store.open(load_settings().resolved_database_url) as store:
            return await ThrottleStore(store.engine).list()

    now = time.time()
    found = [t for t in run_async(read()) if show_all or t.until > now]
    if as_json:
        print_json([{**t.to_dict(), "active": t.until > now} for t in found])
        return
    if not found:
        console.print("no tool is throttled")
        return
    table = Table("tool", "until (UTC)", "active", "reason")
    for throttle in found:
        table.add_row(
            Text(throttle.tool), _when(throttle.until), "yes" if throttle.until > now else "no", Text(throttle.reason)
        )
    console.print(table)


@alerts.command("unthrottle")
@click.argument("tool")
def alerts_unthrottle(tool: str) -> None:
    """End a tool's throttle now (gateways notice within 5 s); its alert resolves when its error rate is back under."""

    async def release() -> bool:
        async with await Store.open(load_settings().resolved_database_url) as store:
            return await ThrottleStore(store.engine).release(tool)

    if not run_async(release()):
        raise NotFoundError(f"tool {tool!r} is not throttled; see `botfactory alerts throttles`")
    console.print(f"tool {tool} is no longer throttled", markup=False)


@sessions.command("release")
@click.argument("session_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def sessions_release(session_id: str, as_json: bool) -> None:
    """Release a quarantined session: it takes messages again and its queued ones are answered."""

    async def release() -> bool:
        async with open_runtime() as runtime:
            return await runtime.release_session(session_id)

    released = run_async(release())
    if as_json:
        print_json({"session_id": session_id, "released": released, "status": "active"})
        return
    if released:
        console.print(f"session {session_id} released; its queued messages will be answered", markup=False)
    else:
        console.print(f"session {session_id} was not quarantined", markup=False)
