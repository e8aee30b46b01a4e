"""Slack apps: which app a signed request belongs to, and the registry of interactive actions.

A deployment serves any number of Slack apps (workspaces), each with its own signing secret, bot token and bot.
A request is routed by the ``api_app_id`` it names when an app is configured with that id; otherwise it belongs
to the app whose signing secret verifies it. A request no app verifies is refused with 401.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Final

from starlette.requests import Request

from botfactory.config import Settings
from botfactory.errors import BotfactoryError, ConfigError, PayloadTooLargeError
from botfactory.runtime import Runtime

__all__ = [
    "DEFAULT_APP",
    "SignatureError",
    "SlackAction",
    "SlackActionHandler",
    "SlackApp",
    "SlackApps",
    "SlackIdentity",
    "SlackInteractions",
    "verify_slack_signature",
]

logger = logging.getLogger(__name__)

DEFAULT_APP: Final = "default"
"""The name of the app the flat ``slack_*`` settings describe."""
MAX_SKEW_S: Final = 300
"""Requests signed longer ago (or further ahead) than this are refused: a captured request cannot be replayed."""


class SignatureError(BotfactoryError):
    """A Slack request's signature is missing, stale or wrong."""

    code = "invalid_signature"
    http_status = 401


@dataclass(frozen=True, kw_only=True)
class SlackApp:
    """One Slack app: how its requests are verified, where its messages go, and how replies are posted.

    Attributes:
        name: The app's name in the settings (``default`` for the flat ``slack_*`` settings).
        signing_secret: The app's signing secret (verifies every request).
        bot_token: The app's ``xoxb-`` token, used only to post replies.
        bot: The botfactory bot that answers.
        channels: Slack channel ids the bot answers in; empty for every channel it is in.
        api_url: Slack Web API root (a local stand-in in tests and demos).
        api_app_id: Requests naming this app id are verified with this app's secret only.
        team_id: Only events from this workspace make turns.
        thinking_text: Posted when a turn starts and replaced by the reply; ``None`` for no placeholder.
    """

    name: str = DEFAULT_APP
    signing_secret: str = field(repr=False)
    bot_token: str = field(repr=False)
    bot: str = "support"
    channels: frozenset[str] = frozenset()
    api_url: str = "https://slack.com/api/"
    api_app_id: str | None = None
    team_id: str | None = None
    thinking_text: str | None = None


@dataclass(frozen=True, kw_only=True)
class SlackIdentity:
    """Who an app posts as, from ``auth.test``: its messages echoed back never make a turn."""

    user_id: str | None
    bot_id: str | None


@dataclass(frozen=True, kw_only=True)
class SlackAction:
    """One ``block_actions`` action a user took (a button, a menu), as a handler receives it.

    Attributes:
        app: The Slack app's name; ``bot`` the botfactory bot it routes to.
        message_ts: The ``ts`` of the message holding the button; ``thread_ts`` its thread (its own ``ts`` when
            it is not in one), so ``team:channel:thread_ts`` is the session it belongs to.
        dedup_key: Pass it to ``Runtime.enqueue``: a repeated delivery of the same action is then never new work.
    """

    app: str
    bot: str
    team: str
    channel: str | None
    user: str
    action_id: str
    value: str | None
    action_ts: str | None
    message_ts: str | None
    thread_ts: str | None
    response_url: str | None
    trigger_id: str | None

    @property
    def dedup_key(self) -> str:
        """The inbox dedup key of this action."""
        return f"slack-action:{self.team}:{self.trigger_id or self.action_ts}:{self.action_id}"


SlackActionHandler = Callable[[SlackAction, Runtime], Awaitable[None]]
"""Handles an action inside the request: it may only enqueue work (Slack wants the answer within 3 s)."""


class SlackInteractions:
    """Handlers of interactive actions, by ``action_id`` prefix (the longest matching prefix wins)."""

    def __init__(self) -> None:
        self._handlers: dict[str, SlackActionHandler] = {}

    def register(self, action_id_prefix: str, handler: SlackActionHandler) -> None:
        """Send actions whose ``action_id`` starts with ``action_id_prefix`` to ``handler``.

        Raises:
            ConfigError: the prefix is empty or already registered.
        """
        if not action_id_prefix:
            raise ConfigError("a Slack action handler needs a non-empty action_id prefix")
        if action_id_prefix in self._handlers:
            raise ConfigError(f"a Slack action handler for {action_id_prefix!r} is already registered")
        self._handlers[action_id_prefix] = handler

    def handler(self, action_id: str) -> SlackActionHandler | None:
        """The handler for ``action_id``, or ``None`` when none is registered."""
        matches = [prefix for prefix in self._handlers if action_id.startswith(prefix)]
        return self._handlers[max(matches, key=len)] if matches else None


def verify_slack_signature(
    secret: str, body: bytes, timestamp: str | None, signature: str | None, *, now: float | None = None
) -> None:
    """Check Slack's ``v0`` signature: HMAC-SHA256 over ``v0:{timestamp}:{body}``, compared in constant time.

    Raises:
        SignatureError: a header is missing, the timestamp is more than 5 minutes away, or the signature is wrong.
    """
    if not timestamp or not signature:
        raise SignatureError("the request has no X-Slack-Request-Timestamp or X-Slack-Signature header")
    try:
        sent = int(timestamp)
    except ValueError:
        raise SignatureError("X-Slack-Request-Timestamp is not a number") from None
    current = time.time() if now is None else now
    if abs(current - sent) > MAX_SKEW_S:
        raise SignatureError(
            f"the request was signed {int(current - sent)} s from now, beyond {MAX_SKEW_S} s (replayed or a clock off)"
        )
    expected = "v0=" + hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise SignatureError("the X-Slack-Signature does not match the body and the signing secret")


class SlackApps:
    """Every configured Slack app, the interactive action handlers, and who each app posts as."""

    def __init__(self, apps: Iterable[SlackApp]) -> None:
        self._apps = {app.name: app for app in apps}
        if not self._apps:
            raise ConfigError("no Slack app configured")
        self.interactions = SlackInteractions()
        self._identities: dict[str, SlackIdentity] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> SlackApps | None:
        """The apps the settings describe (the flat ``slack_*`` settings as ``default``), or ``None`` for none.

        Raises:
            ConfigError: only one of the flat signing secret and bot token is set.
        """
        apps: list[SlackApp] = []
        secret, token = settings.slack_signing_secret, settings.slack_bot_token
        if secret is not None or token is not None:
            if secret is None or token is None:
                missing = "BOTFACTORY_SLACK_SIGNING_SECRET" if secret is None else "BOTFACTORY_SLACK_BOT_TOKEN"
                raise ConfigError(f"Slack needs both its signing secret and its bot token: set {missing} too")
            apps.append(
                SlackApp(
                    signing_secret=secret.get_secret_value(),
                    bot_token=token.get_secret_value(),
                    bot=settings.slack_bot,
                    channels=frozenset(settings.slack_channels),
                    api_url=settings.slack_api_url,
                    thinking_text=settings.slack_thinking_text or None,
                )
            )
        for name, config in settings.slack_apps.items():
            if name == DEFAULT_APP and apps:
                raise ConfigError("slack_apps.default clashes with BOTFACTORY_SLACK_*; rename the app or drop one")
            apps.append(
                SlackApp(
                    name=name,
                    signing_secret=config.signing_secret.get_secret_value(),
                    bot_token=config.bot_token.get_secret_value(),
                    bot=config.bot,
                    channels=frozenset(config.channels),
                    api_url=config.api_url,
                    api_app_id=config.api_app_id,
                    team_id=config.team_id,
                    thinking_text=config.thinking_text or None,
                )
            )
        return cls(apps) if apps else None

    def __iter__(self) -> Iterator[SlackApp]:
        return iter(self._apps.values())

    def __len__(self) -> int:
        return len(self._apps)

    def get(self, name: str | None) -> SlackApp | None:
        """The app called ``name``; with ``None``, the only app if there is exactly one."""
        if name is None:
            return next(iter(self._apps.values())) if len(self._apps) == 1 else self._apps.get(DEFAULT_APP)
        return self._apps.get(name)

    def verify(
        self, body: bytes, timestamp: str | None, signature: str | None, *, api_app_id: str | None = None
    ) -> SlackApp:
        """The app that signed this request.

        Raises:
            SignatureError: no configured app's signing secret verifies it (or the headers are missing or stale).
        """
        named = [app for app in self._apps.values() if api_app_id and app.api_app_id == api_app_id]
        failure: SignatureError | None = None
        for app in named or self._apps.values():
            try:
                verify_slack_signature(app.signing_secret, body, timestamp, signature)
            except SignatureError as exc:
                failure = exc
                continue
            return app
        assert failure is not None
        if len(named or self._apps) > 1 and failure.message.startswith("the X-Slack-Signature does not match"):
            raise SignatureError("the X-Slack-Signature matches no configured Slack app's signing secret")
        raise failure

    def identity(self, name: str) -> SlackIdentity | None:
        """Who the app posts as, once :meth:`set_identity` learned it (``auth.test``)."""
        return self._identities.get(name)

    def set_identity(self, name: str, identity: SlackIdentity) -> None:
        """Record who the app posts as."""
        self._identities[name] = identity


async def read_limited_body(request: Request, limit: int) -> bytes:
    """The raw body (signatures are over the exact bytes), refused past ``limit`` bytes.

    Raises:
        PayloadTooLargeError: the body is larger than ``limit``.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"the request body has {declared} bytes, over the limit of {limit}")
    body = await request.body()
    if len(body) > limit:
        raise PayloadTooLargeError(f"the request body is over the limit of {limit} bytes")
    return body
