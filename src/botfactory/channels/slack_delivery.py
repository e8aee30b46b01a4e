"""Replies to Slack: posted in their thread with each app's own token, over a "thinking…" placeholder.

One :class:`SlackDeliverer` serves every app: the inbox message's ``reply_to`` names the app, and the reply goes
out with that app's ``AsyncWebClient`` (``slack_sdk``'s asyncio client, over one aiohttp session with keep-alive
connections: the calls run on the event loop, not on threads contending with the acks for the GIL). When the app has a
``thinking_text``, the worker asks for a placeholder as a turn starts; its ``ts`` is kept in ``reply_to`` so the
reply replaces it with ``chat.update`` (one message in the thread) and a resumed turn posts no second one. A turn
that ends without a reply (stale, cancelled, dead-lettered) deletes its placeholder.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final

from botfactory.channels._slack_apps import SlackAction, SlackActionHandler, SlackApp, SlackApps, SlackIdentity
from botfactory.channels.slack_approvals import (
    approval_blocks,
    approval_text,
    decided_blocks,
    decided_text,
    handle_approval_click,
)
from botfactory.errors import MissingExtraError
from botfactory.runtime import DeliveryError, Runtime
from botfactory.store import ApprovalRecord, InboxItem, OutboxRecord

if TYPE_CHECKING:
    import aiohttp
    from slack_sdk.web.async_client import AsyncWebClient

__all__ = ["SLACK_CHANNEL", "SlackDeliverer", "approval_click_handler"]

logger = logging.getLogger(__name__)

SLACK_CHANNEL: Final = "slack"
"""The outbox channel of Slack replies (every app's)."""
_PERMANENT: Final = frozenset({"channel_not_found", "not_in_channel", "invalid_auth", "account_inactive", "no_text"})
_TIMEOUT_S: Final = 10


class SlackDeliverer:
    """Posts replies to their thread with the token of the app the message came through."""

    def __init__(self, apps: SlackApps) -> None:
        try:
            import slack_sdk.web.async_client  # noqa: F401 - fail here, at start, when the extra is missing
        except ModuleNotFoundError:
            raise MissingExtraError("slack", "the Slack channel") from None
        self._apps = apps
        self._session: aiohttp.ClientSession | None = None
        self._clients: dict[str, AsyncWebClient] = {}

    async def aclose(self) -> None:
        """Close the HTTP connections to Slack (the deliverer opens new ones if used again)."""
        session, self._session = self._session, None
        self._clients.clear()
        if session is not None:
            await session.close()

    def _client(self, app: SlackApp) -> AsyncWebClient:
        client = self._clients.get(app.name)
        if client is None:
            import aiohttp
            from slack_sdk.web.async_client import AsyncWebClient

            if self._session is None:  # opened in the event loop that delivers, on first use
                self._session = aiohttp.ClientSession()
            client = AsyncWebClient(
                token=app.bot_token, base_url=app.api_url, timeout=_TIMEOUT_S, session=self._session
            )
            self._clients[app.name] = client
        return client

    def _target(self, reply_to: dict[str, Any] | None) -> tuple[SlackApp, AsyncWebClient, dict[str, Any]]:
        target = reply_to or {}
        app = self._apps.get(target.get("app"))
        if app is None:
            raise DeliveryError(f"no Slack app {target.get('app')!r} is configured any more", permanent=True)
        if not target.get("channel"):
            raise DeliveryError("the reply has no Slack channel to go to", permanent=True)
        return app, self._client(app), target

    async def deliver(self, reply: OutboxRecord) -> None:
        """Post ``reply`` in its thread, replacing the turn's placeholder when there is one.

        Raises:
            DeliveryError: Slack refused or could not be reached; ``retry_after_s`` is set on a 429.
        """
        _, client, target = self._target(reply.reply_to)
        placeholder = (target.get("placeholder") or {}).get("ts")
        channel, thread_ts = str(target["channel"]), target.get("thread_ts")
        if placeholder:
            try:
                await _call(client.chat_update, channel=channel, ts=str(placeholder), text=reply.text)
                return
            except DeliveryError as exc:
                if "message_not_found" not in exc.message:  # someone deleted the placeholder: post anew
                    raise
        await _call(client.chat_postMessage, channel=channel, thread_ts=thread_ts, text=reply.text)

    async def turn_started(self, item: InboxItem) -> dict[str, Any] | None:
        """Post the app's "thinking…" placeholder in the thread; ``{"ts": ...}``, or ``None`` (off or failed)."""
        try:
            app, client, target = self._target(item.reply_to)
            if not app.thinking_text:
                return None
            response = await _call(
                client.chat_postMessage,
                channel=str(target["channel"]),
                thread_ts=target.get("thread_ts"),
                text=app.thinking_text,
            )
        except DeliveryError as exc:
            logger.warning(
                "session_id=<%s>, error=<%s> | thinking placeholder not posted", item.session_id, exc.message
            )
            return None
        ts = response.get("ts")
        return {"ts": str(ts)} if ts else None

    async def turn_abandoned(self, reply_to: dict[str, Any]) -> None:
        """Delete the placeholder of a turn that posts no reply (stale, cancelled, dead-lettered)."""
        try:
            _, client, target = self._target(reply_to)
            placeholder = (target.get("placeholder") or {}).get("ts")
            if placeholder:
                await _call(client.chat_delete, channel=str(target["channel"]), ts=str(placeholder))
        except DeliveryError as exc:
            logger.warning("error=<%s> | thinking placeholder not deleted", exc.message)

    async def request_approval(self, item: InboxItem, approval: ApprovalRecord) -> dict[str, Any] | None:
        """Post the request with Approve / Deny buttons in the turn's thread; where it is, or ``None`` on failure."""
        try:
            app, client, target = self._target(item.reply_to)
            response = await _call(
                client.chat_postMessage,
                channel=str(target["channel"]),
                thread_ts=target.get("thread_ts"),
                text=approval_text(approval),
                blocks=approval_blocks(approval),
            )
        except DeliveryError as exc:
            logger.warning(
                "approval_id=<%s>, error=<%s> | approval request not posted to Slack; decide it with the API or CLI",
                approval.id,
                exc.message,
            )
            return None
        ts = response.get("ts")
        return {"app": app.name, "channel": str(target["channel"]), "ts": str(ts)} if ts else None

    async def show_decision(self, approval: ApprovalRecord, *, app: str, channel: str, ts: str) -> None:
        """Replace the request's buttons with who decided what. Never raises."""
        try:
            _, client, _ = self._target({"app": app, "channel": channel})
            await _call(
                client.chat_update, channel=channel, ts=ts, text=decided_text(approval), blocks=decided_blocks(approval)
            )
        except DeliveryError as exc:
            logger.warning("approval_id=<%s>, error=<%s> | approval message not updated", approval.id, exc.message)

    async def tell(self, action: SlackAction, text: str) -> None:
        """An ephemeral message to the user who clicked (why their click did nothing). Never raises."""
        try:
            _, client, _ = self._target({"app": action.app, "channel": action.channel})
            await _call(
                client.chat_postEphemeral,
                channel=str(action.channel),
                user=action.user,
                thread_ts=action.thread_ts,
                text=text,
            )
        except DeliveryError as exc:
            logger.warning("user=<%s>, error=<%s> | ephemeral message not posted", action.user, exc.message)

    async def identify(self) -> None:
        """Learn who each app posts as (``auth.test``), so its own messages echoed back make no turn.

        A failure is logged and left alone: messages carrying a ``bot_id`` are ignored anyway.
        """
        for app in self._apps:
            try:
                response = await _call(self._client(app).auth_test)
            except DeliveryError as exc:
                logger.warning("app=<%s>, error=<%s> | auth.test failed; relying on bot_id", app.name, exc.message)
                continue
            identity = SlackIdentity(user_id=response.get("user_id"), bot_id=response.get("bot_id"))
            self._apps.set_identity(app.name, identity)
            logger.info("app=<%s>, user_id=<%s> | Slack app identified", app.name, identity.user_id)


async def _call(method: Any, **arguments: Any) -> dict[str, Any]:
    """Call an ``AsyncWebClient`` method; Slack's refusals and transport errors become :class:`DeliveryError`.

    Raises:
        DeliveryError: permanent for errors a retry cannot fix; ``retry_after_s`` set on a 429.
    """
    import aiohttp
    from slack_sdk.errors import SlackApiError, SlackRequestError

    try:
        response = await method(**arguments)
    except SlackApiError as exc:
        status = exc.response.status_code
        retry_after = exc.response.headers.get("Retry-After") or exc.response.headers.get("retry-after")
        error = exc.response.get("error") if isinstance(exc.response.data, dict) else None
        if status == 429:
            raise DeliveryError(
                "Slack rate-limited the call", retry_after_s=float(retry_after) if retry_after else None
            ) from None
        raise DeliveryError(f"Slack refused the call: {error or status}", permanent=error in _PERMANENT) from None
    except (SlackRequestError, aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise DeliveryError(f"Slack could not be reached: {exc or type(exc).__name__}") from None
    data = response.data
    return data if isinstance(data, dict) else {}


def approval_click_handler(deliverer: SlackDeliverer) -> SlackActionHandler:
    """The handler of the Approve / Deny buttons: decide, then show the decision in place (or tell the user why not)."""

    async def on_click(action: SlackAction, runtime: Runtime) -> None:
        outcome = await handle_approval_click(action, runtime)
        if isinstance(outcome, str):
            await deliverer.tell(action, outcome)
        elif action.channel and action.message_ts:
            await deliverer.show_decision(outcome, app=action.app, channel=action.channel, ts=action.message_ts)

    return on_click
