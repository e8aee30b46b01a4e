"""Spend: ``botfactory costs --by bot|user|model --since 7d [--daily] [--json]``."""

from __future__ import annotations

from typing import cast

import click
from rich.table import Table
from rich.text import Text

from botfactory.channels import CostReport, cost_report, since_day, utc_today
from botfactory.cli._output import console, print_json
from botfactory.cli.main import cli, load_settings, run_async
from botfactory.store import COST_SCOPES, CostScope, CostStore, Store

__all__: list[str] = []


@cli.command()
@click.option("--by", "by", type=click.Choice(COST_SCOPES), default="bot", show_default=True, help="Group spend by.")
@click.option(
    "--since",
    default="7d",
    show_default=True,
    help="today, a number of days (7d: the last 7 UTC days, today included; 30d), or a date YYYY-MM-DD.",
)
@click.option("--key", default=None, help="Only this bot, user or model alias.")
@click.option("--daily", is_flag=True, help="One row per day and key instead of one per key.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (rows per day, totals per key, and the sum).")
def costs(by: str, since: str, key: str | None, daily: bool, as_json: bool) -> None:
    """Tokens and spend per bot, user or model alias, from the usage counters.

    Prices come from [prices.<alias>] in botfactory.toml; models without a price (local ones) cost 0 but their
    tokens are counted.
    """
    today = utc_today()
    since_day(since, today=today)  # a bad period fails before the database is opened

    async def read() -> CostReport:
        async with await Store.open(load_settings().resolved_database_url) as store:
            costs = CostStore(store.engine)
            return await cost_report(costs, by=cast(CostScope, by), since=since, today=today, key=key)

    report = run_async(read())
    if as_json:
        print_json(report.to_dict())
        return
    if not report.rows:
        console.print(f"no model usage since {report.since}")
        return
    console.print(f"spend by {by}, {report.since} to {report.until} (UTC days)")
    table = Table(*(["day"] if daily else []), by)
    table.add_column("tokens", justify="right")
    table.add_column("cost", justify="right")
    if daily:
        for row in report.rows:
            table.add_row(row.day, Text(row.key), f"{row.tokens:,}", _money(row.cost))
    else:
        for row in report.totals:
            table.add_row(Text(row.key), f"{row.tokens:,}", _money(row.cost))
    table.add_section()
    table.add_row(*([""] if daily else []), "total", f"{report.tokens:,}", _money(report.cost))
    console.print(table)


def _money(amount: float) -> str:
    return f"{amount:.4f}"
