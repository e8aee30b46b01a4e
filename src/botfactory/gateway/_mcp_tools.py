"""The tools an MCP server lists, as gateway tools, and the content of their results as text."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from mcp import types

from botfactory.gateway.catalogue import CallContext, CredentialRef, SideEffect

__all__ = ["McpTool", "build_tools", "result_text"]

logger = logging.getLogger(__name__)

_TOOL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")

ToolCaller = Callable[["McpTool", dict[str, Any], CallContext], Awaitable[Any]]
"""Sends one call of a tool to its server (``McpServer._call``)."""


@dataclass(frozen=True, kw_only=True, eq=False)
class McpTool:
    """One tool of an MCP server, as the gateway runs it; built by ``McpServer.start`` and ``McpServer.refresh``.

    Attributes:
        name: The server's prefix plus the MCP tool name.
        description: The tool's description as the server gives it.
        parameters: The tool's input schema (always ``type: object``).
        side_effect: ``read`` when the server marks the tool read-only (``readOnlyHint``), ``write`` otherwise.
        timeout_s: The server's call timeout.
        credentials: None so far: MCP servers get their credentials through ``env`` or ``headers``.
        needs_approval: The tool (by MCP name or by ``name``) is in the server's ``approval`` list.
        owner: The server's ``owner``, or its name.
        mcp_name: The tool's name on the MCP server.
        server: The name of the ``McpServer``.
    """

    name: str
    description: str
    parameters: dict[str, Any]
    side_effect: SideEffect
    timeout_s: float | None
    credentials: tuple[CredentialRef, ...] = ()
    needs_approval: bool
    owner: str
    mcp_name: str
    server: str
    _caller: ToolCaller = field(repr=False)

    async def invoke(self, arguments: dict[str, Any], context: CallContext) -> Any:
        """Call the tool on its server; return its structured content when it has some, else its text.

        Raises:
            ToolError: the tool reported an error (``isError``) or the server rejected the call.
            ToolTimeoutError: no answer within :attr:`timeout_s`.
            ToolUnavailableError: the server cannot be reached, or went away during the call.
        """
        return await self._caller(self, arguments, context)


def build_tools(
    listed: Sequence[types.Tool],
    *,
    server: str,
    prefix: str,
    timeout_s: float,
    approval: Collection[str],
    owner: str,
    caller: ToolCaller,
) -> tuple[McpTool, ...]:
    """The listed tools as :class:`McpTool`; tools whose name or schema cannot be used are skipped with a warning."""
    tools: dict[str, McpTool] = {}
    for spec in listed:
        name = prefix + spec.name
        if not _TOOL_NAME.fullmatch(name) or name in tools:
            logger.warning(
                "server=<%s>, tool=<%r> | skipped: the name is not 1-64 letters, digits, '_' or '-', or is taken",
                server,
                name,
            )
            continue
        schema = dict(spec.input_schema)
        if schema.setdefault("type", "object") != "object":
            logger.warning("server=<%s>, tool=<%s> | skipped: its input schema is not an object", server, name)
            continue
        read_only = spec.annotations is not None and spec.annotations.read_only_hint is True
        tools[name] = McpTool(
            name=name,
            description=spec.description or spec.title or "",
            parameters=schema,
            side_effect="read" if read_only else "write",
            timeout_s=timeout_s,
            needs_approval=spec.name in approval or name in approval,
            owner=owner,
            mcp_name=spec.name,
            server=server,
            _caller=caller,
        )
    unknown = set(approval) - set(tools) - {tool.mcp_name for tool in tools.values()}
    if unknown:
        logger.warning("server=<%s>, approval=<%s> | approval names unknown tools", server, sorted(unknown))
    return tuple(tools.values())


def result_text(content: Sequence[types.ContentBlock]) -> str:
    """The text blocks joined by newlines; other blocks summarised in brackets (``[image image/png]``)."""
    return "\n".join(_block_text(block) for block in content)


def _block_text(block: types.ContentBlock) -> str:
    if isinstance(block, types.TextContent):
        return block.text
    if isinstance(block, types.ImageContent):
        return f"[image {block.mime_type}]"
    if isinstance(block, types.AudioContent):
        return f"[audio {block.mime_type}]"
    if isinstance(block, types.ResourceLink):
        return f"[resource link {block.uri}]"
    resource = block.resource
    if isinstance(resource, types.TextResourceContents):
        return resource.text
    return f"[resource {resource.uri} {resource.mime_type or 'binary'}]"
