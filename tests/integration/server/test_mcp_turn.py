"""An MCP server's tools in a real turn: discovered at start, called through the gateway, and a server that
crashes mid-call or hangs costs the turn one tool error, not the turn.

The tool timeout (3 s) includes restarting a crashed stdio server (a Python process start, slow on a loaded
machine), so it is kept well above that."""

from __future__ import annotations

import shutil
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from botfactory.config import Settings
from botfactory.memory import OnnxMiniLMEmbedder
from botfactory.server import Platform
from botfactory.store import AuditQuery
from botfactory.testing import ScriptedModel, call, scripted_inference

pytestmark = pytest.mark.integration

MCP_BOT = f"""
from botfactory.agents import Agent, Bot
from botfactory.gateway import McpServer

demo = McpServer("demo", command=[{sys.executable!r}, "-m", "botfactory.testing.mcp_demo", "--transport", "stdio"],
                 prefix="demo_", timeout_s=3.0)
bot = Bot(name="mcpbot", agent=Agent(name="mcpbot", instructions="Use the demo tools.", model="large",
          tools=[demo], max_steps=10))
"""


@pytest.fixture
async def mcpbot(
    tmp_path: Path, seeded_database: Path, embedder: OnnxMiniLMEmbedder, scripted: dict[str, ScriptedModel]
) -> AsyncIterator[Platform]:
    bots_dir = tmp_path / "bots"
    bots_dir.mkdir()
    (bots_dir / "mcpbot.py").write_text(textwrap.dedent(MCP_BOT))
    shutil.copy(seeded_database, tmp_path / "botfactory.db")
    settings = Settings.load(home=tmp_path, bots_dir=bots_dir)
    started = await Platform.start(settings, inference=scripted_inference(scripted), embedder=embedder)
    try:
        yield started
    finally:
        await started.aclose()


async def test_mcp_tools_in_a_turn_survive_a_crash_and_a_hang(
    mcpbot: Platform, scripted: dict[str, ScriptedModel]
) -> None:
    scripted["large"].script = [
        call("demo_echo", text="before"),
        call("demo_crash"),  # the server process exits mid-call
        call("demo_add", a=2, b=3),  # the server is restarted: works again
        call("demo_slow", seconds=30),  # longer than the server's 3 s timeout
        "all done",
    ]
    result = await mcpbot.runtime.invoke("mcpbot", session_id="mcp-1", text="go", user_id="u1")

    assert result.status == "completed" and result.reply == "all done"
    first_request_tools = {t.name for t in scripted["large"].requests[0].tools}
    assert {"demo_echo", "demo_add", "demo_slow", "demo_crash"} <= first_request_tools
    outputs = [m.content or "" for m in scripted["large"].requests[-1].messages if m.role == "tool"]
    assert outputs[0] == "before"
    assert outputs[1].startswith("error: ") and "demo" in outputs[1]
    assert '"sum": 5' in outputs[2] or outputs[2] == "5"
    assert outputs[3].startswith("error: ") and "3 s" in outputs[3]
    audit = mcpbot.engine.gateway.audit
    assert audit is not None
    rows = sorted(await audit.list(AuditQuery(session_id="mcp-1")), key=lambda r: r.position or 0)
    assert [(r.tool, r.outcome) for r in rows] == [
        ("demo_echo", "ok"),
        ("demo_crash", "unavailable"),
        ("demo_add", "ok"),
        ("demo_slow", "timeout"),
    ]
