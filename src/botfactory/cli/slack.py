"""``botfactory slack``: see the whole Slack path work on a laptop, no Slack workspace needed.

``slack standin`` serves a local Slack Web API (``auth.test``, ``chat.postMessage``, ``chat.update``,
``chat.delete``) and prints every post as it arrives; ``slack send`` signs an Events API message the way Slack
does and posts it to a running botfactory. Point ``BOTFACTORY_SLACK_API_URL`` at the stand-in and the reply shows
up in the stand-in's terminal (see docs/slack.md for the three-terminal tour).
"""

from __future__ import annotations

import contextlib
import secrets
import time
from typing import Any

import click
import httpx
from rich.markup import escape

from botfactory.cli._output import console, print_json
from botfactory.cli.main import cli, load_settings
from botfactory.config import Settings
from botfactory.errors import BotfactoryError, ConfigError, InvalidInputError
from botfactory.testing import PostChange, SlackPost, SlackStandIn, message_event, signed_event

__all__ = ["signing_secret"]

_SEND_TIMEOUT_S = 10.0


@cli.group()
def slack() -> None:
    """Try the Slack channel locally: a stand-in Slack, and signed events."""


@slack.command("standin")
@click.option("--port", type=click.IntRange(1, 65535), default=3000, show_default=True, help="Port on 127.0.0.1.")
@click.option("--token", default="xoxb-demo", show_default=True, help="The bot token it accepts.")
def standin(port: int, token: str) -> None:
    """Serve a local Slack Web API and print each message botfactory posts, until Ctrl-C."""
    import uvicorn

    def show(change: PostChange, post: SlackPost) -> None:
        where = f"{post.channel} thread {post.thread_ts}" if post.thread_ts else post.channel
        console.print(f"[bold]{change}[/bold] {escape(where)} ts={post.ts}: {escape(post.text)}", soft_wrap=True)

    app = SlackStandIn(token=token, on_change=show)
    config = uvicorn.Config(app.app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", ws="none")
    console.print(f"Slack stand-in on http://127.0.0.1:{port}/api/ (token {escape(token)}); Ctrl-C to stop.")
    console.print(f"Start botfactory with BOTFACTORY_SLACK_API_URL=http://127.0.0.1:{port}/api/", soft_wrap=True)
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn shuts down, then re-raises the Ctrl-C
        uvicorn.Server(config).run()
    console.print("stand-in stopped")


def signing_secret(settings: Settings, app: str | None) -> tuple[str, str | None]:
    """The signing secret (and app id) of the app ``app`` (default: the single app), as ``botfactory up`` has it.

    Raises:
        ConfigError: no signing secret is configured, or no app has that name.
    """
    flat = settings.slack_signing_secret
    if app in (None, "default") and flat is not None:
        return flat.get_secret_value(), None
    if app is None and len(settings.slack_apps) == 1:
        [config] = settings.slack_apps.values()
        return config.signing_secret.get_secret_value(), config.api_app_id
    if app is not None and app in settings.slack_apps:
        config = settings.slack_apps[app]
        return config.signing_secret.get_secret_value(), config.api_app_id
    if app is not None:
        known = ", ".join(sorted(settings.slack_apps)) or "none"
        raise ConfigError(f"no Slack app named {app!r} is configured (configured: {known}); check slack_apps")
    if settings.slack_apps:
        raise ConfigError(f"several Slack apps are configured: pass --app ({', '.join(sorted(settings.slack_apps))})")
    raise ConfigError(
        "no Slack signing secret is configured: set BOTFACTORY_SLACK_SIGNING_SECRET to the value the server uses"
    )


@slack.command("send")
@click.argument("text")
@click.option("--url", default="http://127.0.0.1:8080", show_default=True, help="The running botfactory.")
@click.option("--channel", default="C0DEMO", show_default=True, help="Slack channel id.")
@click.option("--user", default="U0DEMO", show_default=True, help="Slack user id of the sender.")
@click.option("--team", default="T0DEMO", show_default=True, help="Slack workspace id.")
@click.option("--thread", "thread_ts", default=None, help="Reply in this thread (its root message's ts).")
@click.option("--app", default=None, help="Sign as this configured Slack app (default: the single app).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def send(
    text: str, url: str, channel: str, user: str, team: str, thread_ts: str | None, app: str | None, as_json: bool
) -> None:
    """Send TEXT to a running botfactory as a correctly signed Slack message event."""
    if not text.strip():
        raise InvalidInputError("the message is empty; pass some text to send")
    secret, api_app_id = signing_secret(load_settings(), app)
    ts = f"{time.time():.6f}"
    event_id = f"Ev{secrets.token_hex(5).upper()}"
    payload = message_event(
        text,
        team=team,
        channel=channel,
        user=user,
        ts=ts,
        thread_ts=thread_ts,
        event_id=event_id,
        api_app_id=api_app_id,
    )
    body, headers = signed_event(payload, secret)
    endpoint = url.rstrip("/") + "/slack/events"
    try:
        response = httpx.post(endpoint, content=body, headers=headers, timeout=_SEND_TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise BotfactoryError(
            f"no botfactory answers at {url} ({type(exc).__name__}); start one with `botfactory up`"
        ) from None
    result: dict[str, Any] = {
        "status": response.status_code,
        "session_id": f"{team}:{channel}:{thread_ts or ts}",
        "ts": ts,
        "event_id": event_id,
    }
    if as_json:
        print_json(result)
    else:
        console.print(f"{response.status_code} {escape(response.reason_phrase)}  session {result['session_id']}")
    if response.status_code >= 400:
        raise _refused(response)


def _refused(response: httpx.Response) -> BotfactoryError:
    try:
        error = response.json().get("error") or {}
    except ValueError:
        error = {}
    message = f"botfactory refused the event ({response.status_code} {error.get('code', 'error')}): "
    message += str(error.get("message") or response.text[:200])
    if response.status_code == 401:
        message += "; is BOTFACTORY_SLACK_SIGNING_SECRET the same here and on the server?"
    if response.status_code == 404:
        message += "; the server has no Slack app configured (set BOTFACTORY_SLACK_SIGNING_SECRET and _BOT_TOKEN)"
    return InvalidInputError(message) if response.status_code < 500 else BotfactoryError(message)
