"""MCP servers as tool sources, against the demo MCP server run as a real subprocess over stdio and over HTTP."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from mcp import types

from botfactory.errors import ConfigError, ToolError, ToolTimeoutError, ToolUnavailableError
from botfactory.gateway import CallContext, GatewayTool, McpServer, McpTool, ToolSource
from botfactory.testing.mcp_demo import HTTP_PATH

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

DEMO = [sys.executable, "-m", "botfactory.testing.mcp_demo"]
STDIO = [*DEMO, "--transport", "stdio"]
CONTEXT = CallContext(
    session_id="s1", turn_id="t1", bot="support", agent_path="support", user_id=None, idempotency_key="t1:0"
)
TIMEOUT_S = 1.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_http_demo(port: int) -> subprocess.Popen[bytes]:
    """The demo server on 127.0.0.1:port, once it accepts connections."""
    process = subprocess.Popen([*DEMO, "--transport", "http", "--port", str(port)])
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the demo MCP server exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    process.wait()
    raise RuntimeError(f"the demo MCP server did not listen on port {port}")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.kill()
    process.wait()


def child_pids() -> set[int]:
    """Processes whose parent is this test process (zombies included: a child must be reaped, not just dead)."""
    me = f"\nPPid:\t{os.getpid()}\n"
    children = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                status = Path(f"/proc/{entry}/status").read_text()
            except OSError:
                continue
            if me in status:
                children.add(int(entry))
    return children


def by_name(server: McpServer) -> dict[str, McpTool]:
    return {tool.name: tool for tool in server.tools}


@pytest.fixture(scope="module")
def http_url() -> Iterator[str]:
    port = free_port()
    process = start_http_demo(port)
    try:
        yield f"http://127.0.0.1:{port}{HTTP_PATH}"
    finally:
        stop(process)


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["stdio", "http"])
async def demo(request: pytest.FixtureRequest, http_url: str) -> AsyncIterator[McpServer]:
    """The demo server, connected over stdio or HTTP, with prefix ``demo_``, a 1 s timeout and ``crash`` approved."""
    where = {"command": STDIO} if request.param == "stdio" else {"url": http_url}
    server = McpServer(
        "demo", **where, prefix="demo_", timeout_s=TIMEOUT_S, approval=["crash", "demo_fail"], owner="tools-team"
    )
    await server.start()
    try:
        yield server
    finally:
        await server.aclose()


async def test_discovery_names_schemas_side_effects_and_approvals(demo: McpServer) -> None:
    tools = by_name(demo)

    assert isinstance(demo, ToolSource)
    assert sorted(tools) == ["demo_add", "demo_crash", "demo_echo", "demo_fail", "demo_slow", "demo_stopped_calls"]
    add = tools["demo_add"]
    assert isinstance(add, GatewayTool)
    assert add.mcp_name == "add"
    assert add.parameters["type"] == "object"
    assert add.parameters["required"] == ["a", "b"]
    assert add.parameters["properties"]["a"]["type"] == "integer"
    assert "Add two integers" in add.description
    assert {name for name, tool in tools.items() if tool.side_effect == "read"} == {
        "demo_echo",
        "demo_add",
        "demo_stopped_calls",
    }
    assert {name for name, tool in tools.items() if tool.needs_approval} == {"demo_crash", "demo_fail"}
    assert {tool.owner for tool in tools.values()} == {"tools-team"}
    assert {tool.timeout_s for tool in tools.values()} == {TIMEOUT_S}


async def test_calls_return_text_or_structured_content(demo: McpServer) -> None:
    tools = by_name(demo)

    assert await tools["demo_echo"].invoke({"text": "héllo"}, CONTEXT) == "héllo"
    assert await tools["demo_add"].invoke({"a": 2, "b": 40}, CONTEXT) == {"sum": 42}


async def test_error_result_becomes_tool_error_with_its_text(demo: McpServer) -> None:
    with pytest.raises(ToolError, match="failed on purpose") as caught:
        await by_name(demo)["demo_fail"].invoke({}, CONTEXT)

    assert type(caught.value) is ToolError


async def test_slow_call_times_out_and_the_server_keeps_working(demo: McpServer) -> None:
    started = time.monotonic()
    with pytest.raises(ToolTimeoutError, match=r"tool demo_slow on MCP server demo did not answer within 1 s"):
        await by_name(demo)["demo_slow"].invoke({"seconds": 30}, CONTEXT)

    assert time.monotonic() - started < TIMEOUT_S + 1.0
    assert await by_name(demo)["demo_echo"].invoke({"text": "still here"}, CONTEXT) == "still here"
    # The server was told to cancel (notifications/cancelled) and stopped the work: it does not run on unseen.
    stopped = by_name(demo)["demo_stopped_calls"]
    for _ in range(50):
        if await stopped.invoke({}, CONTEXT) == {"stopped": 1}:
            break
        await asyncio.sleep(0.05)
    assert await stopped.invoke({}, CONTEXT) == {"stopped": 1}


async def test_refresh_lists_again_also_on_list_changed(demo: McpServer) -> None:
    before = demo.tools

    await demo.refresh()
    assert demo.tools is not before
    assert [tool.name for tool in demo.tools] == [tool.name for tool in before]

    refreshed = demo.tools
    await demo._on_message(types.ToolListChangedNotification())
    assert demo._refresh_task is not None
    await demo._refresh_task
    assert demo.tools is not refreshed


async def test_stdio_crash_mid_call_fails_the_call_then_the_server_is_restarted_and_aclose_ends_it() -> None:
    before = child_pids()
    server = McpServer("crashy", command=STDIO, timeout_s=5)
    await server.start()
    try:
        first = child_pids() - before
        assert len(first) == 1
        started = time.monotonic()
        with pytest.raises(ToolUnavailableError, match=r"MCP server crashy went away during the call to tool crash"):
            await by_name(server)["crash"].invoke({}, CONTEXT)
        assert time.monotonic() - started < 2.0

        assert await by_name(server)["echo"].invoke({"text": "back"}, CONTEXT) == "back"
        second = child_pids() - before
        assert len(second) == 1 and second != first

        os.kill(second.pop(), signal.SIGKILL)  # dies while idle: the next call starts a new one first
        for _ in range(250):  # the client reaps it once it reads the end of its output, and marks the connection lost
            connection = server._connection
            if not child_pids() - before and (connection is None or connection.lost):
                break
            await asyncio.sleep(0.02)
        assert await by_name(server)["add"].invoke({"a": 1, "b": 1}, CONTEXT) == {"sum": 2}
    finally:
        await server.aclose()
    assert child_pids() - before == set()  # terminated and reaped

    await server.aclose()  # idempotent
    with pytest.raises(ToolUnavailableError, match="closed; start it again"):
        await by_name(server)["echo"].invoke({"text": "late"}, CONTEXT)


async def test_http_crash_mid_call_fails_the_call_then_reconnects_once_the_server_is_back_and_after_restarts() -> None:
    port = free_port()
    process = start_http_demo(port)
    server = McpServer("remote", url=f"http://127.0.0.1:{port}{HTTP_PATH}", timeout_s=5)
    try:
        await server.start()
        with pytest.raises(ToolUnavailableError, match="went away during the call to tool crash"):
            await by_name(server)["crash"].invoke({}, CONTEXT)
        process.wait(timeout=5)

        with pytest.raises(ToolUnavailableError, match=r"cannot connect to MCP server remote .*check that the server"):
            await by_name(server)["echo"].invoke({"text": "anyone?"}, CONTEXT)

        process = start_http_demo(port)
        assert await by_name(server)["echo"].invoke({"text": "back"}, CONTEXT) == "back"

        stop(process)  # restarted while idle: the new process rejects the old session, the call gets a new one
        process = start_http_demo(port)
        assert await by_name(server)["add"].invoke({"a": 20, "b": 1}, CONTEXT) == {"sum": 21}
    finally:
        await server.aclose()
        stop(process)


async def test_unreachable_servers_fail_at_start_saying_what_to_check() -> None:
    before = child_pids()
    missing = McpServer("missing", command=["/nonexistent/mcp-server"])
    with pytest.raises(ToolUnavailableError, match=r"MCP server missing .*/nonexistent/mcp-server.*check that the"):
        await missing.start()

    no_http = McpServer("down", url=f"http://127.0.0.1:{free_port()}/mcp")
    with pytest.raises(ToolUnavailableError, match=r"cannot connect to MCP server down .*server is running"):
        await no_http.start()

    silent = McpServer("silent", command=[sys.executable, "-c", "import sys; sys.stdin.read()"], connect_timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(ToolUnavailableError, match=r"MCP server silent .*did not complete the MCP handshake"):
        await silent.start()
    assert time.monotonic() - started < 3.0

    not_mcp = McpServer("quits", command=[sys.executable, "-c", "pass"])
    with pytest.raises(ToolUnavailableError, match=r"MCP server quits .*handshake"):
        await not_mcp.start()

    assert child_pids() - before == set()
    assert missing.tools == () and silent.tools == ()


async def test_configuration_is_checked_when_the_server_is_made() -> None:
    with pytest.raises(ConfigError, match="name 'Git' is invalid"):
        McpServer("Git", command=STDIO)
    with pytest.raises(ConfigError, match="exactly one of command"):
        McpServer("git", command=STDIO, url="http://127.0.0.1:1/mcp")
    with pytest.raises(ConfigError, match="exactly one of command"):
        McpServer("git")
    with pytest.raises(ConfigError, match="command is a list"):
        McpServer("git", command="uvx mcp-server-git")
