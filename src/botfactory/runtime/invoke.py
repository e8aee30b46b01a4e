"""Run one turn for a channel: persist the message, run the bot's entry agent, persist steps and the reply.

This is the in-process path used by ``botfactory up``, ``chat`` and the HTTP invoke endpoint. Turns of one
session run one at a time in this process; the durable inbox (multi-worker, crash-safe) builds on it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict
from dataclasses import dataclass

from botfactory.agents import BotRegistry, Engine, EventHandler, Step, TurnInput
from botfactory.config import Settings
from botfactory.errors import BotfactoryError, InvalidInputError, LimitExceededError, PayloadTooLargeError
from botfactory.messages import Message
from botfactory.store import StepRecord, Store

__all__ = ["InvokeResult", "Runtime"]

logger = logging.getLogger(__name__)

_HISTORY_MESSAGES = 10
_MAX_KEY_CHARS = 256


@dataclass(frozen=True, kw_only=True)
class InvokeResult:
    """The outcome of one turn as a channel reports it."""

    session_id: str
    turn_id: str
    status: str
    reply: str
    error_code: str | None = None


class _StoreRecorder:
    def __init__(self, store: Store, turn_id: str) -> None:
        self._store = store
        self._turn_id = turn_id

    async def record(self, step: Step) -> None:
        await self._store.record_step(
            StepRecord(
                turn_id=self._turn_id,
                position=step.position,
                agent_path=step.agent_path,
                kind="model" if step.kind == "model" else "tool",
                name=step.name,
                input=step.input,
                output=step.output,
                status="completed" if step.ok else "failed",
                started_at=step.started_at,
                finished_at=step.finished_at,
            )
        )


class Runtime:
    """Runs turns for channels against the bots, the engine and the store."""

    def __init__(self, *, settings: Settings, store: Store, engine: Engine, bots: BotRegistry) -> None:
        self.settings = settings
        self.store = store
        self.engine = engine
        self.bots = bots
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    def check_input(self, *, session_id: str, text: str, user_id: str | None) -> None:
        """Reject input no turn should start from.

        Raises:
            InvalidInputError: empty text, or a bad session or user id.
            PayloadTooLargeError: text longer than ``max_message_chars``.
        """
        if not text.strip():
            raise InvalidInputError("the message text is empty; send some text")
        if len(text) > self.settings.max_message_chars:
            raise PayloadTooLargeError(
                f"the message has {len(text)} characters, over the limit of {self.settings.max_message_chars}; "
                "shorten it or raise max_message_chars"
            )
        for name, value in (("session_id", session_id), ("user_id", user_id)):
            if value is not None and not (0 < len(value) <= _MAX_KEY_CHARS and value.isprintable()):
                raise InvalidInputError(f"{name} must be 1 to {_MAX_KEY_CHARS} printable characters")

    async def invoke(
        self,
        bot_name: str,
        *,
        session_id: str,
        text: str,
        user_id: str | None = None,
        on_event: EventHandler | None = None,
    ) -> InvokeResult:
        """Run one turn of ``bot_name`` on the session and return its reply.

        A limit reached mid-turn ends the turn as ``failed`` with a reply that says why; a model outage
        raises after the turn is recorded as failed.

        Raises:
            BotNotFoundError, InvalidInputError, PayloadTooLargeError: before anything is written.
            ModelError: the model failed after retries and fallbacks.
        """
        bot = self.bots.get(bot_name)
        self.check_input(session_id=session_id, text=text, user_id=user_id)
        async with self._locks[session_id]:
            await self.store.ensure_session(session_id, bot=bot.name, user_id=user_id)
            history = [
                Message(role=m.role, content=m.text)
                for m in await self.store.list_messages(session_id)
                if m.role in ("user", "assistant")
            ][-_HISTORY_MESSAGES:]
            message = await self.store.add_message(session_id, role="user", text=text, user_id=user_id)
            turn_id = str(uuid.uuid4())
            await self.store.start_turn(session_id, bot=bot.name, input_message_id=message.id, turn_id=turn_id)
            turn = TurnInput(session_id=session_id, turn_id=turn_id, text=text, user_id=user_id, history=history)
            try:
                result = await self.engine.run_turn(
                    bot.agent,
                    turn,
                    max_tokens=min(bot.max_tokens_per_turn, self.settings.turn_max_tokens),
                    on_event=on_event,
                    recorder=_StoreRecorder(self.store, turn_id),
                )
            except LimitExceededError as exc:
                reply = f"Sorry, I had to stop: {exc.message}"
                await self.store.finish_turn(
                    turn_id, status="failed", reply=reply, error_code=exc.code, error_message=exc.message
                )
                return InvokeResult(
                    session_id=session_id, turn_id=turn_id, status="failed", reply=reply, error_code=exc.code
                )
            except BotfactoryError as exc:
                await self.store.finish_turn(turn_id, status="failed", error_code=exc.code, error_message=exc.message)
                raise
            except BaseException:
                await asyncio.shield(
                    self.store.finish_turn(
                        turn_id, status="failed", error_code="internal", error_message="turn aborted"
                    )
                )
                raise
            await self.store.finish_turn(
                turn_id,
                status="completed",
                reply=result.reply,
                input_tokens=result.usage.input_tokens,
                output_tokens=result.usage.output_tokens,
            )
            logger.info("session_id=<%s>, turn_id=<%s>, steps=<%d> | turn completed", session_id, turn_id, result.steps)
            return InvokeResult(session_id=session_id, turn_id=turn_id, status="completed", reply=result.reply)
