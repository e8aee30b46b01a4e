"""A small MCP server for tests, demos and benchmarks: ``echo``, ``add``, ``slow``, ``stopped_calls``, ``crash``, ``fail``.

Run it over stdio (what :class:`~botfactory.gateway.McpServer` starts with ``command=``) or streamable HTTP on
127.0.0.1 (``url=``)::

    python -m botfactory.testing.mcp_demo --transport stdio
    python -m botfactory.testing.mcp_demo --transport http --port 8765   # serves http://127.0.0.1:8765/mcp
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations

__all__ = ["HTTP_PATH", "build_server", "main"]

HTTP_PATH = "/mcp"
"""Where the HTTP transport serves the MCP endpoint."""

_READ_ONLY = ToolAnnotations(read_only_hint=True)


def build_server() -> MCPServer:
    """The demo server with its six tools, ready to run on any transport."""
    server: MCPServer = MCPServer("botfactory-demo", log_level="WARNING")

    @server.tool(annotations=_READ_ONLY, structured_output=False)
    def echo(text: str) -> str:
        """Return the text unchanged."""
        return text

    @server.tool(annotations=_READ_ONLY)
    def add(a: int, b: int) -> dict[str, int]:
        """Add two integers; the answer is structured: {"sum": a + b}."""
        return {"sum": a + b}

    stopped = 0

    @server.tool(structured_output=False)
    async def slow(seconds: float) -> str:
        """Wait the given number of seconds, then answer "done"."""
        nonlocal stopped
        try:
            await anyio.sleep(seconds)
        except anyio.get_cancelled_exc_class():  # the client gave up and told us: the work stops here
            stopped += 1
            raise
        return "done"

    @server.tool(annotations=_READ_ONLY)
    def stopped_calls() -> dict[str, int]:
        """How many calls of slow were stopped because the client cancelled them."""
        return {"stopped": stopped}

    @server.tool(structured_output=False)
    def crash() -> str:
        """Kill the server process at once, mid-call (for crash tests)."""
        os._exit(1)

    @server.tool(structured_output=False)
    def fail() -> str:
        """Always fail with an error result the model can read."""
        raise ToolError("the demo tool failed on purpose")

    return server


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo server until its client disconnects (stdio) or it is stopped (HTTP)."""
    parser = argparse.ArgumentParser(prog="python -m botfactory.testing.mcp_demo", description=__doc__)
    parser.add_argument("--transport", choices=("stdio", "http"), default="stdio")
    parser.add_argument("--port", type=int, default=8765, help="HTTP port on 127.0.0.1 (HTTP transport only)")
    args = parser.parse_args(argv)
    server = build_server()
    if args.transport == "stdio":
        server.run("stdio")
    else:
        server.run("streamable-http", host="127.0.0.1", port=args.port, streamable_http_path=HTTP_PATH)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
