"""API keys for the HTTP API: ``botfactory keys create|list|revoke``.

These open the store only, so they work from any host that reaches the database. A running server honours a
revocation within ``auth_cache_s`` seconds.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
from rich.table import Column, Table
from rich.text import Text

from botfactory.cli._output import console, print_json
from botfactory.cli.main import cli, load_settings, run_async
from botfactory.identity import ApiKeys
from botfactory.store import ApiKeyRecord, ApiKeyStore, Store

__all__ = ["key_json"]

T = TypeVar("T")


def _with_keys(action: Callable[[ApiKeys], Awaitable[T]]) -> T:
    async def run() -> T:
        settings = load_settings()
        async with await Store.open(settings.resolved_database_url) as store:
            return await action(ApiKeys(ApiKeyStore(store.engine), ttl_s=0))

    return run_async(run())


def key_json(record: ApiKeyRecord) -> dict[str, Any]:
    """A key as ``--json`` prints it: never its secret or hash."""
    return {
        "id": record.id,
        "prefix": record.prefix,
        "bot": record.bot,
        "name": record.name,
        "created_at": record.created_at,
        "last_used_at": record.last_used_at,
        "revoked_at": record.revoked_at,
    }


def _when(epoch_s: float | None) -> str:
    if epoch_s is None:
        return ""
    return dt.datetime.fromtimestamp(epoch_s, tz=dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _say(line: str) -> None:
    console.print(line, markup=False, soft_wrap=True)


@cli.group()
def keys() -> None:
    """API keys for the HTTP API (`botfactory serve` requires one on every request)."""


@keys.command("create")
@click.option("--bot", help="The one bot the key may use.")
@click.option("--all-bots", is_flag=True, help="Let the key use every bot instead of one.")
@click.option("--name", help="What the key is for, shown in `keys list`.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the secret included, once).")
def keys_create(bot: str | None, all_bots: bool, name: str | None, as_json: bool) -> None:
    """Create a key and print its secret. It is stored hashed and cannot be shown again."""
    if (bot is None) == (not all_bots):
        raise click.UsageError("name the key's bot with --bot NAME, or pass --all-bots for a key to every bot")
    issued = _with_keys(lambda api_keys: api_keys.create(bot=bot, name=name))
    record = issued.record
    if as_json:
        print_json(
            {
                "id": record.id,
                "key": issued.secret,
                "prefix": record.prefix,
                "bot": record.bot,
                "name": record.name,
                "created_at": record.created_at,
            }
        )
        return
    scope = f"bot {record.bot!r}" if record.bot is not None else "every bot"
    _say(f"created API key {record.id} for {scope}:")
    _say("")
    _say(f"    {issued.secret}")
    _say("")
    _say("Copy it now: it is stored hashed and cannot be shown again.")
    _say(f"Use it as: Authorization: Bearer {record.prefix}...    Revoke it: botfactory keys revoke {record.id}")


@keys.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include revoked keys.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def keys_list(show_all: bool, as_json: bool) -> None:
    """List keys (never their secrets), oldest first."""
    records = _with_keys(lambda api_keys: api_keys.list(include_revoked=show_all))
    if as_json:
        print_json([key_json(record) for record in records])
        return
    if not records:
        console.print(
            "no API keys" if show_all else "no active API keys; create one: botfactory keys create --bot NAME"
        )
        return
    table = Table(
        Column("id", no_wrap=True, min_width=20),
        Column("prefix", no_wrap=True),
        "bot",
        "name",
        "created",
        "last used",
        *(["revoked"] if show_all else []),
    )
    for record in records:
        values = [
            record.id,
            record.prefix + "…",
            record.bot or "(all bots)",
            record.name or "",
            _when(record.created_at),
            _when(record.last_used_at) or "never",
        ]
        if show_all:
            values.append(_when(record.revoked_at))
        table.add_row(*(Text(value) for value in values))
    console.print(table)


@keys.command("revoke")
@click.argument("key_id")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def keys_revoke(key_id: str, yes: bool) -> None:
    """Revoke a key for good; servers refuse it within auth_cache_s seconds (10 by default)."""
    if not yes:
        found = _with_keys(lambda api_keys: api_keys.store.get(key_id))  # an unknown id fails before the question
        scope = f"bot {found.bot!r}" if found.bot is not None else "every bot"
        click.confirm(
            f"revoke API key {found.id} ({found.prefix}…, {scope})? clients using it will be refused",
            abort=True,
            err=True,
        )
    record, changed = _with_keys(lambda api_keys: api_keys.revoke(key_id))
    if changed:
        _say(f"API key {record.id} ({record.prefix}…) revoked; running servers refuse it within their auth_cache_s")
    else:
        _say(f"API key {record.id} was already revoked on {_when(record.revoked_at)}")
