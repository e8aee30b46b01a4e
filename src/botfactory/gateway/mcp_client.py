"""MCP servers as tool sources: every tool an MCP server lists becomes a gateway tool.

:class:`McpServer` connects with the official ``mcp`` client, either starting the server as a subprocess and
speaking over its stdin/stdout (``command=``) or over streamable HTTP (``url=``). It lists the server's tools at
:meth:`~McpServer.start`, again at :meth:`~McpServer.refresh` and whenever the server announces that its tools
changed. Each becomes an :class:`McpTool` whose calls go to the server with the tool's timeout; a server that crashes
mid-call fails that call with :class:`~botfactory.errors.ToolUnavailableError` and is restarted (stdio) or
reconnected (HTTP) on the next call. See docs/mcp.md.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import urlsplit

import httpx2
from mcp import StdioServerParameters, stdio_client, types
from mcp.client.session import IncomingMessage
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from botfactory.errors import ConfigError, ToolError, ToolTimeoutError, ToolUnavailableError
from botfactory.gateway._mcp_connection import McpConnection, TransportStreams, describe_exception
from botfactory.gateway._mcp_tools import McpTool, build_tools, result_text
from botfactory.gateway.catalogue import CallContext

__all__ = ["IDEMPOTENCY_META_KEY", "McpServer", "McpTool"]

logger = logging.getLogger(__name__)

IDEMPOTENCY_META_KEY = "botfactory/idempotency_key"
"""The ``_meta`` key of every ``tools/call`` request that carries the call's idempotency key."""

_SERVER_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")
# How long an HTTP response may stay silent: at least the call timeout, and long enough for server-sent events.
_MIN_READ_TIMEOUT_S = 300.0
_MAX_PAGES = 100
# What an HTTP server (or the transport, for a bare 404) answers when it no longer knows our session.
_LOST_SESSION = frozenset({"session not found", "session terminated"})


class McpServer:
    """The tools of one MCP server (a :class:`~botfactory.gateway.ToolSource`), over stdio or streamable HTTP.

    Call :meth:`start` once before use and :meth:`aclose` at the end. Give exactly one of ``command`` and ``url``.

    Args:
        name: The server's name: 1-64 lower-case letters, digits, ``_`` or ``-``, starting with a letter.
        command: Start the server as a subprocess and speak MCP over its stdin/stdout: the program and its
            arguments, e.g. ``["uvx", "mcp-server-git"]``.
        env: Environment variables for the subprocess, on top of a minimal inherited set (``PATH``, ``HOME``, ...).
        cwd: The subprocess's working directory.
        url: The server's streamable-HTTP endpoint, e.g. ``http://127.0.0.1:8765/mcp``.
        headers: HTTP headers sent with every request (e.g. ``Authorization``).
        prefix: Put before every tool name, e.g. ``git_``.
        timeout_s: Timeout of every tool call.
        approval: Tools (by MCP name or prefixed name) a person must approve before each call.
        owner: Who answers for the tools; default: ``name``.
        connect_timeout_s: Timeout of connecting, the MCP handshake and listing the tools.

    Raises:
        ConfigError: the name is invalid, or not exactly one of ``command`` and ``url`` is given.

    Example:
        >>> git = McpServer("git", command=["uvx", "mcp-server-git"], prefix="git_")  # doctest: +SKIP
        >>> await git.start()  # doctest: +SKIP
    """

    def __init__(
        self,
        name: str,
        *,
        command: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        url: str | None = None,
        headers: Mapping[str, str] | None = None,
        prefix: str = "",
        timeout_s: float = 30.0,
        approval: Collection[str] = (),
        owner: str | None = None,
        connect_timeout_s: float = 10.0,
    ) -> None:
        if not _SERVER_NAME.fullmatch(name):
            raise ConfigError(
                f"MCP server name {name!r} is invalid: use 1-64 lower-case letters, digits, '_' or '-', "
                "starting with a letter"
            )
        if (command is None) == (url is None):
            raise ConfigError(f"MCP server {name}: give exactly one of command (stdio) and url (streamable HTTP)")
        if command is not None and (isinstance(command, str) or not command):
            raise ConfigError(f"MCP server {name}: command is a list, the program and its arguments, e.g. ['uvx', 'x']")
        if url is not None and not url.startswith(("http://", "https://")):
            raise ConfigError(f"MCP server {name}: url must start with http:// or https://")
        if timeout_s <= 0 or connect_timeout_s <= 0:
            raise ConfigError(f"MCP server {name}: timeout_s and connect_timeout_s must be positive")
        self._name = name
        self.command = tuple(command) if command is not None else None
        self.env = dict(env or {})
        self.cwd = cwd
        self.url = url
        self.headers = dict(headers or {})
        self.prefix = prefix
        self.timeout_s = timeout_s
        self.approval = frozenset(approval)
        self.owner = owner or name
        self.connect_timeout_s = connect_timeout_s
        self._tools: tuple[McpTool, ...] = ()
        self._connection: McpConnection | None = None
        self._lock = asyncio.Lock()
        self._started = False
        self._refresh_task: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        """The server's name."""
        return self._name

    @property
    def transport(self) -> Literal["stdio", "http"]:
        """How the server is reached."""
        return "stdio" if self.command is not None else "http"

    @property
    def tools(self) -> Sequence[McpTool]:
        """The tools found by the last listing; empty before :meth:`start`."""
        return self._tools

    async def start(self) -> None:
        """Connect (starting the subprocess for stdio), run the MCP handshake and list the tools.

        Raises:
            ToolUnavailableError: the server cannot be started or reached, or does not answer the handshake; the
                message says what to check.
        """
        self._started = True
        try:
            await self._connect()
        except BaseException:
            await self.aclose()  # a failed start leaves no process behind
            raise

    async def refresh(self) -> None:
        """List the tools again (reconnecting first if the server went away); on failure the previous tools stay.

        Raises:
            ToolUnavailableError: the server cannot be reached.
        """
        if not self._started:
            await self.start()
            return
        connection = self._connection
        if connection is None or connection.lost:
            await self._connect()  # a new connection lists the tools itself
            return
        await self._list_tools(connection)

    async def aclose(self) -> None:
        """Disconnect and terminate the subprocess (stdio); idempotent."""
        self._started = False
        task, self._refresh_task = self._refresh_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.wait({task})
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()
            logger.info("server=<%s> | mcp server closed", self._name)

    async def _connect(self) -> McpConnection:
        """The live connection, opening a new one (and listing the tools on it) when there is none."""
        connection = self._connection
        if connection is not None and not connection.lost:
            return connection
        async with self._lock:
            connection = self._connection
            if connection is not None and not connection.lost:
                return connection
            if not self._started:
                raise ToolUnavailableError(
                    f"MCP server {self._name} is closed; start it again before calling its tools"
                )
            if connection is not None:
                self._connection = None
                await connection.close()
                logger.info("server=<%s> | reconnecting to the mcp server", self._name)
            connection = await self._open()
            try:
                await self._list_tools(connection)
                if not self._started:
                    raise ToolUnavailableError(f"MCP server {self._name} was closed while it connected")
            except BaseException:
                await connection.close()
                raise
            self._connection = connection
            return connection

    async def _open(self) -> McpConnection:
        hint = self._hint()
        try:
            return await McpConnection.open(
                self._name, self._transport, timeout_s=self.connect_timeout_s, on_notification=self._on_message
            )
        except (TimeoutError, MCPError) as exc:
            if isinstance(exc, MCPError) and exc.code != types.REQUEST_TIMEOUT:
                raise ToolUnavailableError(
                    f"MCP server {self._name} ({self._where()}) failed the MCP handshake ({exc.message}); {hint}",
                    retryable=True,
                ) from None
            raise ToolUnavailableError(
                f"MCP server {self._name} ({self._where()}) did not complete the MCP handshake within "
                f"{self.connect_timeout_s:g} s; {hint}",
                retryable=True,
            ) from None
        except Exception as exc:
            raise ToolUnavailableError(
                f"cannot connect to MCP server {self._name} ({self._where()}): {describe_exception(exc)}; {hint}",
                retryable=True,
            ) from None

    def _transport(self) -> AbstractAsyncContextManager[TransportStreams]:
        if self.command is not None:
            program, *args = self.command
            parameters = StdioServerParameters(command=program, args=args, env=self.env or None, cwd=self.cwd)
            return stdio_client(parameters, errlog=sys.stderr)
        return self._http_transport()

    @asynccontextmanager
    async def _http_transport(self) -> AsyncIterator[TransportStreams]:
        assert self.url is not None
        timeout = httpx2.Timeout(self.connect_timeout_s, read=max(self.timeout_s, _MIN_READ_TIMEOUT_S))
        http = httpx2.AsyncClient(headers=self.headers, timeout=timeout, follow_redirects=True)
        async with http, streamable_http_client(self.url, http_client=http) as streams:
            yield streams

    def _where(self) -> str:
        if self.command is not None:
            return f"command {self.command[0]}"  # only the program: arguments may carry tokens
        parts = urlsplit(self.url or "")
        return f"url {parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"

    def _hint(self) -> str:
        if self.command is not None:
            return (
                "check that the command exists, starts an MCP server on stdio and writes nothing but MCP messages "
                "to stdout"
            )
        return "check that the server is running and that the url is its streamable-HTTP endpoint (often /mcp)"

    async def _list_tools(self, connection: McpConnection) -> None:
        listed: list[types.Tool] = []
        cursor: str | None = None
        try:
            for _ in range(_MAX_PAGES):
                params = types.PaginatedRequestParams(cursor=cursor) if cursor else None
                page = await connection.session.list_tools(params=params)
                listed.extend(page.tools)
                cursor = page.next_cursor
                if not cursor:
                    break
        except MCPError as exc:
            if exc.code == types.CONNECTION_CLOSED:
                connection.mark_lost()
            raise ToolUnavailableError(
                f"MCP server {self._name} failed to list its tools ({exc.message}); {self._hint()}", retryable=True
            ) from None
        except Exception as exc:  # a listing the mcp client cannot parse
            raise ToolUnavailableError(
                f"MCP server {self._name} listed its tools in a form that cannot be read ({describe_exception(exc)}); "
                "check that the server speaks a supported MCP version"
            ) from exc
        self._tools = build_tools(
            listed,
            server=self._name,
            prefix=self.prefix,
            timeout_s=self.timeout_s,
            approval=self.approval,
            owner=self.owner,
            caller=self._call,
        )
        logger.info("server=<%s>, tools=<%d> | mcp tools loaded", self._name, len(self._tools))

    async def _on_message(self, message: IncomingMessage) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            if self._refresh_task is None or self._refresh_task.done():
                self._refresh_task = asyncio.create_task(self._refresh_quietly(), name=f"mcp-refresh:{self._name}")
        elif isinstance(message, Exception):
            logger.debug("server=<%s>, error=<%s> | mcp transport error", self._name, describe_exception(message))

    async def _refresh_quietly(self) -> None:
        try:
            await self.refresh()
        except Exception as exc:  # a background refresh has nobody to raise to; the previous tools stay
            logger.warning(
                "server=<%s>, error=<%s> | refreshing the mcp tools failed", self._name, describe_exception(exc)
            )

    async def _call(self, tool: McpTool, arguments: dict[str, Any], context: CallContext) -> Any:
        timeout_s = tool.timeout_s or self.timeout_s
        meta = cast(types.RequestParamsMeta, {IDEMPOTENCY_META_KEY: context.idempotency_key})
        for attempt in range(2):
            connection = await self._connect()
            try:
                # Cancelling the call at the timeout makes the mcp client tell the server to stop the work
                # (notifications/cancelled), as its own read timeout would, without arming a second timer per call.
                async with asyncio.timeout(timeout_s):
                    result = await connection.session.call_tool(tool.mcp_name, arguments, meta=meta)
                break
            except MCPError as exc:
                # An HTTP server that restarted since the last call rejects our session before running anything,
                # so the call is safe to send again on a new session.
                if attempt or not _session_lost(exc):
                    raise self._call_error(connection, tool, timeout_s, exc) from None
                connection.mark_lost()
            except TimeoutError:
                raise self._timeout(tool, timeout_s) from None
            except Exception as exc:  # the answer broke the protocol: wrong structured content, input requests, ...
                raise ToolError(
                    f"tool {tool.name} on MCP server {self._name} answered with something unusable "
                    f"({describe_exception(exc)})"
                ) from exc
        return self._result(tool, result)

    def _result(self, tool: McpTool, result: types.CallToolResult) -> Any:
        text = result_text(result.content)
        if result.is_error:
            raise ToolError(f"tool {tool.name} failed: {text or 'the MCP server gave no reason'}")
        if result.structured_content is not None:
            return result.structured_content
        return text

    def _timeout(self, tool: McpTool, timeout_s: float) -> ToolTimeoutError:
        return ToolTimeoutError(
            f"tool {tool.name} on MCP server {self._name} did not answer within {timeout_s:g} s; "
            "try again later or with a smaller request"
        )

    def _call_error(self, connection: McpConnection, tool: McpTool, timeout_s: float, exc: MCPError) -> ToolError:
        if exc.code == types.CONNECTION_CLOSED or _session_lost(exc):
            connection.mark_lost()
            again = "restarted" if self.command is not None else "reconnected"
            return ToolUnavailableError(
                f"MCP server {self._name} went away during the call to tool {tool.name} ({exc.message}); "
                f"whether the call took effect is unknown. The server is {again} on the next call",
                retryable=tool.side_effect == "read",  # repeating a write might do it twice
            )
        if exc.code == types.REQUEST_TIMEOUT:
            return self._timeout(tool, timeout_s)
        if exc.code == types.INTERNAL_ERROR:
            return ToolUnavailableError(
                f"MCP server {self._name} failed while running tool {tool.name} ({exc.message}); try again later",
                retryable=True,
            )
        return ToolError(f"MCP server {self._name} rejected the call to tool {tool.name}: {exc.message}")


def _session_lost(exc: MCPError) -> bool:
    """The HTTP server no longer knows the session (it restarted): nothing of the request ran."""
    return exc.message.strip().rstrip(".").lower() in _LOST_SESSION
