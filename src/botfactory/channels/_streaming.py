"""One turn invoked with its engine events streamed as they happen, for every channel that streams."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from botfactory.errors import BotfactoryError
from botfactory.runtime import InvokeResult, Runtime

__all__ = ["invoke_with_events"]

logger = logging.getLogger(__name__)


async def invoke_with_events(
    runtime: Runtime,
    bot: str,
    *,
    session_id: str,
    text: str,
    user_id: str | None,
    dedup_key: str | None = None,
) -> AsyncIterator[dict[str, Any] | InvokeResult | Exception]:
    """Yield each engine event of the message's turn, then its :class:`InvokeResult` or the error it failed with.

    A :class:`~botfactory.errors.BotfactoryError` is yielded as is (the channel reports its code); any other
    exception is logged here and yielded for the channel to report as internal. Closing the iterator early (the
    client went away) cancels the wait, not the turn: the turn finishes and its reply is stored.
    """
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    async def on_event(event: dict[str, Any]) -> None:
        await queue.put(event)

    async def run() -> InvokeResult:
        try:
            return await runtime.invoke(
                bot, session_id=session_id, text=text, user_id=user_id, dedup_key=dedup_key, on_event=on_event
            )
        finally:
            await queue.put(None)

    task = asyncio.create_task(run())
    try:
        while (event := await queue.get()) is not None:
            yield event
        try:
            yield await task
        except Exception as exc:
            if not isinstance(exc, BotfactoryError):
                logger.exception("session_id=<%s> | streamed turn failed", session_id)
            yield exc
    finally:
        if not task.done():
            task.cancel()
