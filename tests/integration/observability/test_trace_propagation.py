"""Trace context leaves botfactory with every outbound call: an MCP server continues the turn's trace.

The demo MCP server runs on a real streamable-HTTP server on 127.0.0.1 in this process, so its own OpenTelemetry
span (the ``mcp`` SDK's server middleware) lands in the same exporter. It has no other way to learn the trace than
``params._meta.traceparent`` on the wire (the same field a stdio server reads).
"""

from __future__ import annotations

from typing import Any

import pytest

from botfactory.agents import Agent, Engine, TurnInput
from botfactory.gateway import McpServer
from botfactory.testing import ScriptedModel, call, scripted_inference, serve_app
from botfactory.testing.mcp_demo import HTTP_PATH, build_server

pytestmark = pytest.mark.integration


async def test_an_mcp_server_continues_the_turns_trace_from_the_request_meta(spans: Any) -> None:
    async with serve_app(build_server().streamable_http_app(streamable_http_path=HTTP_PATH)) as base_url:
        demo = McpServer("demo", url=f"{base_url}{HTTP_PATH}", prefix="demo_", timeout_s=10)
        await demo.start()
        try:
            model = ScriptedModel([call("demo_echo", text="traced"), "done"], name="large")
            agent = Agent(name="mcpbot", instructions="Use the demo tools.", model="large", tools=[demo])
            result = await Engine(scripted_inference({"large": model})).run_turn(
                agent, TurnInput(session_id="mcp-trace", turn_id="turn-mcp", text="echo it", bot="mcpbot")
            )
        finally:
            await demo.aclose()
    assert result.reply == "done"

    finished = spans.get_finished_spans()
    [tool] = [s for s in finished if s.name == "execute_tool demo_echo"]
    [sent] = [s for s in finished if s.name == "MCP send tools/call echo"]
    [handled] = [s for s in finished if s.name == "tools/call echo"]  # recorded by the MCP server
    assert handled.context.trace_id == tool.context.trace_id
    assert handled.parent is not None and handled.parent.is_remote  # learnt from the wire, not from this process
    assert handled.parent.span_id == sent.context.span_id
    assert sent.parent is not None and sent.parent.span_id == tool.context.span_id
