"""In-memory resources of sessions on this worker, released when a session has been idle too long.

Tools get the session's dict as ``ToolContext.resources``. A session's state always lives in the store; this
is only for things worth keeping warm between turns (a client, a cache). A session idle for
``runtime.idle_timeout_s`` has its dict dropped and every value with ``aclose()`` or ``close()`` closed.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable
from typing import Any

__all__ = ["SessionResources"]

logger = logging.getLogger(__name__)


class SessionResources:
    """Per-session dicts with last-use times."""

    def __init__(self, *, idle_timeout_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._idle_timeout_s = idle_timeout_s
        self._clock = clock
        self._sessions: dict[str, tuple[dict[str, Any], float]] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._sessions

    def for_session(self, session_id: str) -> dict[str, Any]:
        """The session's resources (created empty), marked as used now."""
        resources = self._sessions.get(session_id, ({}, 0.0))[0]
        self._sessions[session_id] = (resources, self._clock())
        return resources

    def touch(self, session_id: str) -> None:
        """Mark the session as used now (a turn on it just ended)."""
        if session_id in self._sessions:
            self._sessions[session_id] = (self._sessions[session_id][0], self._clock())

    async def release_idle(self, *, busy: frozenset[str] = frozenset()) -> list[str]:
        """Release every session idle longer than the timeout, except ``busy`` ones; returns their ids."""
        now = self._clock()
        idle = [
            session_id
            for session_id, (_, used) in self._sessions.items()
            if now - used >= self._idle_timeout_s and session_id not in busy
        ]
        for session_id in idle:
            await self._release(session_id)
        return idle

    async def release_all(self) -> None:
        """Release every session (the worker is stopping)."""
        for session_id in list(self._sessions):
            await self._release(session_id)

    async def _release(self, session_id: str) -> None:
        resources, _ = self._sessions.pop(session_id)
        for name, value in resources.items():
            closer = getattr(value, "aclose", None) or getattr(value, "close", None)
            if not callable(closer):
                continue
            try:
                result = closer()
                if inspect.isawaitable(result):
                    await result
            except Exception:  # one bad resource must not keep the others open
                logger.warning("session_id=<%s>, resource=<%s> | closing failed", session_id, name, exc_info=True)
        logger.debug("session_id=<%s> | idle: resources released", session_id)
