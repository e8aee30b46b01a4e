"""SIGTERM and SIGINT for the long-running commands (``up``, ``serve``, ``worker``).

The first signal asks the command to stop gracefully: stop taking work, let running turns finish within
``runtime.shutdown_grace_s``, release the rest, exit 0. A second signal stops at once; turns left running are
resumed by another worker when their lease expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar

__all__ = ["StopNow", "Stopper"]

T = TypeVar("T")
_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopNow(Exception):  # a control-flow signal, not an error: no BotfactoryError
    """A second signal arrived: the command stops without waiting."""


class Stopper:
    """Turns SIGTERM and SIGINT into a graceful stop; use it as a context manager inside the command's coroutine.

    Attributes:
        requested: Set by the first signal.
        signal_name: ``SIGTERM`` or ``SIGINT`` once one arrived.
    """

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self.signal_name: str | None = None
        self.forced = False
        self._callbacks: list[Callable[[], None]] = []
        self._task: asyncio.Task[Any] | None = None
        self._previous: dict[int, Any] = {}

    def on_stop(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the first signal arrives (e.g. to tell a server to exit)."""
        self._callbacks.append(callback)

    def __enter__(self) -> Stopper:
        loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        for sig in _SIGNALS:
            previous = signal.getsignal(sig)
            try:
                loop.add_signal_handler(sig, self._handle, sig)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no support here
                continue
            self._previous[sig] = previous
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        loop = asyncio.get_running_loop()
        for sig, previous in self._previous.items():
            loop.remove_signal_handler(sig)
            with contextlib.suppress(TypeError, ValueError):
                signal.signal(sig, previous)  # asyncio.run's own Ctrl-C handling, for whatever runs after us
        self._previous.clear()

    def _handle(self, sig: int) -> None:
        if self.requested.is_set():
            self.forced = True
            if self._task is not None:
                self._task.cancel()
            return
        self.signal_name = signal.Signals(sig).name
        self.requested.set()
        for callback in self._callbacks:
            callback()

    async def unless_stopped(self, awaitable: Awaitable[T]) -> T | None:
        """Await ``awaitable`` (start-up work), or cancel it and return ``None`` when a stop is asked first."""
        work = asyncio.ensure_future(awaitable)
        stop = asyncio.ensure_future(self.requested.wait())
        try:
            await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not work.done():
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await work
        if work.cancelled():
            return None
        return work.result()


async def run_stoppable(main: Callable[[Stopper], Awaitable[T]]) -> T:
    """Run ``main`` with a :class:`Stopper`; a second signal raises :class:`StopNow` here."""
    with Stopper() as stopper:
        try:
            return await main(stopper)
        except asyncio.CancelledError:
            if stopper.forced:
                raise StopNow from None
            raise
