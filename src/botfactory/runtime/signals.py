"""Wake-ups inside one process: new work in the inbox, a control change (cancel, kill switch), new events.

Each is a :class:`Pulse`. Sources fire them (this process's own writes, PostgreSQL notifications, the SQLite
change feed); waiters take the current pulse, look at the store, and wait for the next one, so a fire between
looking and waiting is never missed. Waiters always re-read the store: a pulse says "look", never what changed.
"""

from __future__ import annotations

import asyncio
import contextlib

from botfactory.store import CONTROL_CHANNEL, EVENTS_CHANNEL, INBOX_CHANNEL

__all__ = ["Pulse", "Signals"]


class Pulse:
    """A broadcast that waiters cannot miss: :meth:`mark` before looking, then :meth:`wait`."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def fire(self) -> None:
        """Wake everyone waiting on the current generation."""
        self._event.set()
        self._event = asyncio.Event()

    def mark(self) -> asyncio.Event:
        """The current generation; pass it to :meth:`wait` after looking at the store."""
        return self._event

    @staticmethod
    async def wait(marked: asyncio.Event, timeout: float | None) -> bool:  # noqa: ASYNC109 - a bounded wait
        """Wait until the pulse fires after ``marked`` was taken, or ``timeout``; ``True`` if it fired."""
        if marked.is_set():
            return True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await marked.wait()
                return True
        return False


class Signals:
    """The three pulses of a process, and the handler that feeds database notifications into them."""

    def __init__(self) -> None:
        self.inbox = Pulse()
        self.control = Pulse()
        self.events = Pulse()

    def on_notification(self, channel: str, payload: str) -> None:
        """Fire the pulse for a database notification channel."""
        del payload
        {INBOX_CHANNEL: self.inbox, CONTROL_CHANNEL: self.control, EVENTS_CHANNEL: self.events}.get(
            channel, self.events
        ).fire()

    def fire_all(self) -> None:
        """Something committed; everyone looks."""
        self.inbox.fire()
        self.control.fire()
        self.events.fire()
