"""Operating the runtime: sessions, the dead letters, kill switches.

These commands open the store and the runtime's queue only: no models, no bots, no worker. They work from any
host that reaches the database, and their changes reach every worker (PostgreSQL notifications, or the SQLite
change feed).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import click
from rich.table import Column, Table
from rich.text import Text

from botfactory.agents import BotRegistry, Engine
from botfactory.cli._output import console, print_json
from botfactory.cli.main import cli, load_settings, run_async
from botfactory.inference import Inference
from botfactory.runtime import Runtime, start_runtime
from botfactory.store import InboxItem, Store

__all__ = ["open_runtime"]

T = TypeVar("T")
_TEXT_COLUMN = 60
_UUID_CHARS = 36


def _id_column(header: str, width: int = _UUID_CHARS) -> Column:
    """A column of ids people copy into the next command: never shortened, on one line when it fits."""
    return Column(header, no_wrap=True, overflow="fold", min_width=width)


@contextlib.asynccontextmanager
async def open_runtime() -> AsyncIterator[Runtime]:
    """The runtime as channels see it, on the configured database, with no worker and no models."""
    settings = load_settings()
    async with await Store.open(settings.resolved_database_url) as store:
        stack = await start_runtime(
            settings, store=store, engine=Engine(Inference({})), bots=BotRegistry(), run_worker=False, listen=False
        )
        try:
            yield stack.runtime
        finally:
            await stack.aclose()


def _with_runtime(action: Callable[[Runtime], Awaitable[T]]) -> T:
    async def run() -> T:
        async with open_runtime() as runtime:
            return await action(runtime)

    return run_async(run())


def _row(table: Table, *values: str) -> None:
    """Add a row of plain text: ids, messages and errors come from users and must not be read as markup."""
    table.add_row(*(Text(value) for value in values))


def _say(line: str) -> None:
    console.print(line, markup=False, soft_wrap=True)


def _short(text: str | None, width: int = _TEXT_COLUMN) -> str:
    if not text:
        return ""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def _ago(epoch_s: float | None) -> str:
    if epoch_s is None:
        return ""
    seconds = max(time.time() - epoch_s, 0)
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"


def _when(epoch_s: float | None) -> str:
    if epoch_s is None:
        return ""
    return dt.datetime.fromtimestamp(epoch_s, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# Sessions


@cli.group()
def sessions() -> None:
    """Conversations: their state, messages and turns."""


@sessions.command("list")
@click.option("--active", is_flag=True, help="Only sessions with queued or running work, or recent messages.")
@click.option("--bot", help="Only this bot's sessions.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def sessions_list(active: bool, bot: str | None, limit: int, as_json: bool) -> None:
    """List sessions, most recently active first.

    Active: work is queued or running, or a message arrived within runtime.idle_timeout_s.
    """
    found = _with_runtime(lambda runtime: runtime.list_sessions(active=active, bot=bot, limit=limit))
    rows = [Runtime.summary_to_dict(summary) for summary in found]
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print("no active sessions" if active else "no sessions")
        return
    widest = max(len(row["id"]) for row in rows)
    table = Table(_id_column("session", min(widest, _UUID_CHARS)), "bot", "user", "state", "pending", "last message")
    for row in rows:
        _row(
            table,
            row["id"],
            row["bot"],
            row["user_id"] or "",
            row["state"],
            str(row["pending"]),
            _ago(row["updated_at"]),
        )
    console.print(table)


@sessions.command("show")
@click.argument("session_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def sessions_show(session_id: str, as_json: bool) -> None:
    """Show a session: state, messages with their status, turns with status, tokens and reply."""
    view = _with_runtime(lambda runtime: runtime.session(session_id))
    data = view.to_dict()
    if as_json:
        print_json(data)
        return
    _say(f"session {data['id']}  bot {data['bot']}  user {data['user_id'] or '-'}")
    running = f", running turn {data['running_turn_id']}" if data["running_turn_id"] else ""
    _say(f"state {data['state']}, {data['pending']} pending{running}; started {_when(data['created_at'])}")
    messages = Table("seq", "role", "status", "text", title="messages")
    for message in data["messages"]:
        _row(messages, str(message["seq"]), message["role"], message["status"] or "", _short(message["text"]))
    console.print(messages)
    for turn in data["turns"]:
        error = f" ({turn['error_code']})" if turn["error_code"] else ""
        _say(
            f"turn {turn['id']}  {turn['status']}{error}  attempt {turn['attempts']}  "
            f"tokens {turn['input_tokens']} in / {turn['output_tokens']} out  cost {turn.get('cost', 0.0):.4f}"
        )
        if turn["reply"] is not None:
            _say(f"  reply: {_short(turn['reply'], 200)}")


@sessions.command("cancel")
@click.argument("session_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def sessions_cancel(session_id: str, as_json: bool) -> None:
    """Cancel a session's running turn (on whichever worker runs it) and its queued messages."""
    result = _with_runtime(lambda runtime: runtime.cancel(session_id))
    if as_json:
        print_json(
            {
                "session_id": result.session_id,
                "turn_id": result.turn_id,
                "running": result.running,
                "cancelled_messages": result.cancelled_messages,
            }
        )
        return
    if result.running:
        turn = f"turn {result.turn_id} is stopping (its worker stops it within a heartbeat)"
    elif result.turn_id is not None:
        turn = f"turn {result.turn_id} cancelled"
    else:
        turn = "no turn was running"
    _say(f"session {session_id}: {turn}; {result.cancelled_messages} queued message(s) cancelled")


# Dead letters


@cli.group()
def inbox() -> None:
    """The inbox: messages that failed every attempt (dead letters)."""


def _dead_json(item: InboxItem) -> dict[str, Any]:
    return {
        "message_id": item.message_id,
        "session_id": item.session_id,
        "bot": item.bot,
        "seq": item.seq,
        "text": item.text,
        "user_id": item.user_id,
        "channel": item.channel,
        "error": item.error,
        "turn_id": item.turn_id,
        "enqueued_at": item.enqueued_at,
        "failed_at": item.finished_at,
    }


@inbox.command("dead-letters")
@click.option("--bot", help="Only this bot's messages.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def inbox_dead_letters(bot: str | None, limit: int, as_json: bool) -> None:
    """List messages that failed every attempt (runtime.max_attempts), newest first, with the error."""
    rows = [_dead_json(item) for item in _with_runtime(lambda runtime: runtime.dead_letters(bot=bot, limit=limit))]
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print("no dead letters")
        return
    table = Table(_id_column("message"), "session", "bot", "failed", "error", "text")
    for row in rows:
        _row(
            table,
            row["message_id"],
            row["session_id"],
            row["bot"],
            _ago(row["failed_at"]),
            _short(row["error"]),
            _short(row["text"], 30),
        )
    console.print(table)
    console.print("retry one: botfactory inbox retry MESSAGE_ID    drop one: botfactory inbox discard MESSAGE_ID")


@inbox.command("retry")
@click.argument("message_id")
def inbox_retry(message_id: str) -> None:
    """Queue a dead letter's text again, as a new message at the end of its session."""
    dead = _with_runtime(lambda runtime: runtime.retry_dead_letter(message_id))
    _say(f"message {dead.message_id} queued again on session {dead.session_id} (bot {dead.bot})")


@inbox.command("discard")
@click.argument("message_id")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def inbox_discard(message_id: str, yes: bool) -> None:
    """Drop a dead letter for good: it leaves the list and is never retried."""
    if not yes:
        click.confirm(f"discard dead letter {message_id} for good?", abort=True, err=True)
    dead = _with_runtime(lambda runtime: runtime.discard_dead_letter(message_id))
    _say(f"message {dead.message_id} of session {dead.session_id} discarded")


# Kill switches


@cli.group("kill-switch")
def kill_switch() -> None:
    """Switch a bot, an agent or a tool off on every worker, within one step."""


def _target(bot: str | None, agent: str | None, tool: str | None) -> tuple[str, str]:
    chosen = [(kind, name) for kind, name in (("bot", bot), ("agent", agent), ("tool", tool)) if name is not None]
    if len(chosen) != 1:
        raise click.UsageError("name exactly one of --bot NAME, --agent NAME or --tool NAME")
    return chosen[0]


_BOT = click.option("--bot", help="A bot: its turns stop at their next step.")
_AGENT = click.option("--agent", help="An agent (name, or path like support/github): it stops at its next step.")
_TOOL = click.option("--tool", help="A tool: calls to it fail and the model is told it is unavailable.")


@kill_switch.command("on")
@_BOT
@_AGENT
@_TOOL
@click.option("--reason", help="Why; shown to users and operators.")
def kill_switch_on(bot: str | None, agent: str | None, tool: str | None, reason: str | None) -> None:
    """Switch a bot, agent or tool off (the switch is on)."""
    kind, name = _target(bot, agent, tool)
    changed = _with_runtime(lambda runtime: runtime.set_kill_switch(kind, name, on=True, reason=reason))
    if changed:
        _say(f"kill switch on: {kind} {name!r} stops within one step on every worker")
    else:
        _say(f"kill switch for {kind} {name!r} was already on")


@kill_switch.command("off")
@_BOT
@_AGENT
@_TOOL
def kill_switch_off(bot: str | None, agent: str | None, tool: str | None) -> None:
    """Switch a bot, agent or tool back on (the switch is off)."""
    kind, name = _target(bot, agent, tool)
    changed = _with_runtime(lambda runtime: runtime.set_kill_switch(kind, name, on=False))
    if changed:
        _say(f"kill switch off: {kind} {name!r} runs again")
    else:
        _say(f"kill switch for {kind} {name!r} was not on")


@kill_switch.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def kill_switch_list(as_json: bool) -> None:
    """List the switches that are on."""
    switches = _with_runtime(lambda runtime: runtime.kill_switches())
    keys = sorted(switches)
    if as_json:
        print_json([{"kind": kind, "name": name, "reason": switches[(kind, name)]} for kind, name in keys])
        return
    if not keys:
        console.print("no kill switch is on")
        return
    table = Table("kind", "name", "reason")
    for kind, name in keys:
        _row(table, kind, name, switches[(kind, name)] or "")
    console.print(table)
