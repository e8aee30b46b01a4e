"""``botfactory chat``: a terminal conversation through the same path a channel takes."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import click
import httpx

from botfactory.cli._output import console, startup_progress, stderr
from botfactory.cli.main import cli, load_settings, run_async
from botfactory.config import Settings
from botfactory.errors import BotfactoryError, InvalidInputError, ModelUnavailableError
from botfactory.server import Platform


def describe_event(event: dict[str, Any]) -> str | None:
    """A progress line for an engine event, or ``None`` for events not worth a line."""
    kind = event.get("type")
    if kind == "tool_call_started":
        args = ", ".join(f"{k}={json.dumps(v)[:60]}" for k, v in (event.get("arguments") or {}).items())
        return f"  ↳ {event['agent_path']} → {event['tool']}({args})"
    if kind == "tool_call_finished" and not event.get("ok"):
        return f"  ✗ {event['agent_path']} → {event['tool']}: {event.get('output', '')[:120]}"
    return None


def _print_event(event: dict[str, Any]) -> None:
    line = describe_event(event)
    if line:
        console.print(f"[dim]{line}[/dim]")


def server_is_up(base_url: str) -> bool:
    """Whether a botfactory server answers at ``base_url``."""
    try:
        return httpx.get(f"{base_url}/healthz", timeout=1.0, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def _remote_turn(client: httpx.Client, base_url: str, bot: str, session_id: str, text: str) -> str:
    body = {"session_id": session_id, "text": text, "user_id": "cli"}
    url = f"{base_url}/v1/bots/{bot}/invoke"
    with client.stream("POST", url, json=body, headers={"Accept": "text/event-stream"}) as response:
        if response.status_code != 200:
            response.read()
            error = response.json().get("error", {}) if "json" in response.headers.get("content-type", "") else {}
            raise InvalidInputError(error.get("message") or f"the server answered {response.status_code}")
        name = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
                if name == "event":
                    _print_event(data)
                elif name == "reply":
                    return str(data["reply"])
                elif name == "error":
                    raise BotfactoryError(f"the turn failed on the server ({data.get('code')}): {data.get('message')}")
    raise ModelUnavailableError("the server closed the stream without a reply; see its log")


def _read_line() -> str | None:
    try:
        return input("> ")
    except EOFError:
        return None


def chat_remote(
    base_url: str, bot: str, session_id: str, messages: Sequence[str], *, api_key: str | None = None
) -> None:
    """Talk to a running server over its streaming HTTP API (with ``api_key`` when it requires keys)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    with httpx.Client(timeout=httpx.Timeout(600.0, connect=5.0), trust_env=False, headers=headers) as client:
        for text in _inputs(messages):
            console.print(f"< {_remote_turn(client, base_url, bot, session_id, text)}")


def _inputs(messages: Sequence[str]) -> Iterator[str]:
    """The given messages, or lines typed at the prompt until EOF or ``exit``."""
    if messages:
        yield from messages
        return
    while (line := _read_line()) is not None:
        if line.strip() in ("exit", "quit"):
            return
        if line.strip():
            yield line


async def chat_in_process(settings: Settings, bot: str, session_id: str, messages: Sequence[str]) -> None:
    """Start the platform in this process and talk to it."""
    with startup_progress() as (model_progress, docs_progress):
        platform = await Platform.start(settings, install_progress=model_progress, ingest_progress=docs_progress)
    try:
        platform.bots.get(bot)

        async def on_event(event: dict[str, Any]) -> None:
            _print_event(event)

        for text in _inputs(messages):
            try:
                result = await platform.runtime.invoke(
                    bot, session_id=session_id, text=text, user_id="cli", on_event=on_event
                )
            except InvalidInputError as exc:
                stderr.print(f"[red]error[/red]: {exc.message}")
                continue
            console.print(f"< {result.reply}")
    finally:
        await platform.aclose()


@cli.command()
@click.argument("bot")
@click.option("--session", "session_id", help="Session id (default: a new one). Reuse it to continue a conversation.")
@click.option("-m", "--message", "messages", multiple=True, help="Send this message and exit (repeatable).")
@click.option("--url", help="Server URL (default: http://HOST:PORT from settings).")
@click.option("--in-process", is_flag=True, help="Do not look for a running server; start the platform here.")
@click.option(
    "--api-key",
    envvar="BOTFACTORY_API_KEY",
    help="API key for a server started with `botfactory serve` (or set BOTFACTORY_API_KEY).",
)
def chat(
    bot: str,
    session_id: str | None,
    messages: tuple[str, ...],
    url: str | None,
    in_process: bool,
    api_key: str | None,
) -> None:
    """Talk to BOT in the terminal: a running server if there is one, else in this process."""
    settings = load_settings()
    session_id = session_id or f"cli-{uuid.uuid4().hex[:12]}"
    base_url = (url or f"http://{settings.host}:{settings.port}").rstrip("/")
    if not in_process and server_is_up(base_url):
        stderr.print(f"[dim]session {session_id} on {base_url}[/dim]")
        chat_remote(base_url, bot, session_id, messages, api_key=api_key)
        return
    if url:
        raise BotfactoryError(f"no botfactory server answers at {base_url}; start one with `botfactory up`")
    stderr.print(f"[dim]no server at {base_url}: running in-process (session {session_id})[/dim]")
    run_async(chat_in_process(settings, bot, session_id, messages))
