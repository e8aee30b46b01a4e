"""One live session with an MCP server, owned by a background task.

The ``mcp`` client's transports and :class:`~mcp.ClientSession` are anyio context managers whose task groups must be
entered and exited by the same task. :class:`McpConnection` therefore opens them in a task of its own, hands the
ready session to callers (requests may be sent from any task) and closes everything by signalling that task. It
also notices when the server goes away (stdio end of file, a lost HTTP session) so the owner can reconnect.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Self

import anyio
from mcp import ClientSession
from mcp.client.session import MessageHandlerFnT
from mcp.shared.message import SessionMessage

__all__ = ["McpConnection", "describe_exception"]

logger = logging.getLogger(__name__)

TransportStreams = tuple[Any, Any]
"""The ``(read_stream, write_stream)`` pair an ``mcp`` client transport yields."""

# Closing a stdio server may take its grace period, SIGTERM's and SIGKILL's (2 s each in mcp 2.1).
_CLOSE_TIMEOUT_S = 8.0
_ERROR_CHARS = 200


class _EofWatch:
    """A transport's read stream that reports its end (the server exited or dropped the connection)."""

    def __init__(self, inner: Any, on_eof: Callable[[], None]) -> None:
        self._inner = inner
        self._on_eof = on_eof

    @property
    def last_context(self) -> Any:
        """The sender's context of the last message, when the transport records one."""
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> SessionMessage | Exception:
        try:
            item: SessionMessage | Exception = await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._on_eof()
            raise
        return item

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class McpConnection:
    """A connected, initialized MCP session; open with :meth:`open`, end with :meth:`close`.

    Attributes:
        session: The initialized session; send requests on it from any task.
        lost: The server went away (or a call saw the connection drop); open a new connection.
    """

    session: ClientSession

    def __init__(
        self,
        label: str,
        transport: Callable[[], AbstractAsyncContextManager[TransportStreams]],
        *,
        request_timeout_s: float,
        on_notification: MessageHandlerFnT,
    ) -> None:
        self._label = label
        self._transport = transport
        self._request_timeout_s = request_timeout_s
        self._on_notification = on_notification
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.lost = False

    @classmethod
    async def open(
        cls,
        label: str,
        transport: Callable[[], AbstractAsyncContextManager[TransportStreams]],
        *,
        timeout_s: float,
        on_notification: MessageHandlerFnT,
    ) -> McpConnection:
        """Connect and run the MCP handshake within ``timeout_s``.

        Raises:
            TimeoutError: the handshake did not finish in time.
            Exception: whatever the transport or the handshake raised (spawn errors, HTTP errors, MCP errors).
        """
        connection = cls(label, transport, request_timeout_s=timeout_s, on_notification=on_notification)
        ready: asyncio.Future[ClientSession] = asyncio.get_running_loop().create_future()
        connection._task = asyncio.create_task(connection._own(ready), name=f"mcp-connection:{label}")
        try:
            async with asyncio.timeout(timeout_s + 1.0):  # the session's own request timeout should fire first
                connection.session = await asyncio.shield(ready)
        except BaseException:
            await connection.close()
            if ready.done() and not ready.cancelled():
                ready.exception()  # retrieved: asyncio would otherwise log it as never retrieved
            raise
        return connection

    def mark_lost(self) -> None:
        """Record that the server went away and let the owning task wind the connection down."""
        if not self.lost:
            logger.info("server=<%s> | mcp connection lost", self._label)
        self.lost = True
        self._stop.set()

    async def close(self) -> None:
        """Close the session and the transport (terminating a stdio server); idempotent, bounded in time."""
        self._stop.set()
        task = self._task
        if task is None or task.done():
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), _CLOSE_TIMEOUT_S)
        except TimeoutError:
            logger.warning("server=<%s> | mcp connection did not close in time; cancelling it", self._label)
            task.cancel()
            await asyncio.wait({task}, timeout=_CLOSE_TIMEOUT_S)

    async def _own(self, ready: asyncio.Future[ClientSession]) -> None:
        try:
            async with self._transport() as (read_stream, write_stream):
                watched = _EofWatch(read_stream, self.mark_lost)
                async with ClientSession(
                    watched,
                    write_stream,
                    read_timeout_seconds=self._request_timeout_s,
                    message_handler=self._on_notification,
                ) as session:
                    await session.initialize()
                    ready.set_result(session)
                    await self._stop.wait()
        except Exception as exc:  # the connection's end is reported to callers through `ready` or their calls
            if not ready.done():
                ready.set_exception(_sole_cause(exc))
            else:
                logger.info("server=<%s>, error=<%s> | mcp connection ended", self._label, describe_exception(exc))
        finally:
            self.lost = True
            if not ready.done():
                ready.cancel()


def _sole_cause(exc: Exception) -> Exception:
    """The one exception inside (nested) single-member exception groups, e.g. the MCP error a task group wrapped."""
    while isinstance(exc, ExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def describe_exception(exc: BaseException) -> str:
    """A short, single-line description of ``exc``, looking inside exception groups for the first real cause."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = " ".join(str(exc).split())
    if len(text) > _ERROR_CHARS:
        text = text[: _ERROR_CHARS - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
