"""The real 0.5B model behind llama.cpp: constrained tool choice, crash recovery, clean shutdown.

Slow on two cores (each test loads the model, ~5-10 s); run with ``pytest -m model``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import jsonschema
import pytest

from botfactory.inference.base import ModelRequest
from botfactory.inference.local import LocalModelServer
from botfactory.messages import Message


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_processes_on(port: int) -> list[int]:
    """Pids of live llama children serving ``port`` (found by command line, zombies excluded)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if (
            state != "Z"
            and any(part.endswith(b"_llama_child.py") for part in cmdline)
            and str(port).encode() in cmdline
        ):
            pids.append(int(entry.name))
    return pids


pytestmark = [pytest.mark.integration, pytest.mark.model, pytest.mark.timeout(300)]

TOOL_CALL_SCHEMA = {
    "anyOf": [
        {
            "type": "object",
            "properties": {
                "tool": {"const": "get_weather"},
                "arguments": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                    "additionalProperties": False,
                },
            },
            "required": ["tool", "arguments"],
            "additionalProperties": False,
        },
        {
            "type": "object",
            "properties": {
                "tool": {"const": "get_time"},
                "arguments": {
                    "type": "object",
                    "properties": {"timezone": {"type": "string"}},
                    "required": ["timezone"],
                    "additionalProperties": False,
                },
            },
            "required": ["tool", "arguments"],
            "additionalProperties": False,
        },
    ]
}
SYSTEM = (
    "You route requests to tools. Tools: get_weather(city) gives the current weather in a city; "
    "get_time(timezone) gives the current time in an IANA timezone. Answer with one tool call as JSON."
)


@pytest.fixture
async def server(small_model_path: Path) -> AsyncIterator[LocalModelServer]:
    server = LocalModelServer(
        small_model_path, port=free_port(), context_size=1024, threads=2, start_timeout_s=120, restart_backoff_s=0.1
    )
    await server.start()
    yield server
    await server.stop()


def ask(text: str) -> ModelRequest:
    messages = (Message(role="system", content=SYSTEM), Message(role="user", content=text))
    return ModelRequest(messages=messages, response_schema=TOOL_CALL_SCHEMA, max_tokens=40)


async def test_constrained_json_picks_the_right_tool(server: LocalModelServer) -> None:
    model = server.chat_model("small")
    try:
        response = await model.complete(ask("What's the weather like in Paris right now?"))
    finally:
        await model.aclose()

    call = json.loads(response.message.content)
    jsonschema.validate(call, TOOL_CALL_SCHEMA)
    assert call["tool"] == "get_weather"
    assert "paris" in call["arguments"]["city"].lower()
    assert response.usage.input_tokens > 50 and response.usage.output_tokens > 0


async def test_killed_child_is_restarted_and_serves_again(server: LocalModelServer) -> None:
    first = server.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    for _ in range(100):
        if server.restarts:
            break
        await asyncio.sleep(0.1)
    await server.wait_ready(timeout_s=120)

    model = server.chat_model("small", max_retries=2)
    try:
        response = await model.complete(ModelRequest(messages=(Message(role="user", content="Say OK."),), max_tokens=4))
    finally:
        await model.aclose()

    assert server.restarts == 1
    assert server.pid not in (None, first)
    assert response.message.content.strip()
    assert child_processes_on(server.port) == [server.pid]


async def test_stop_leaves_no_process_behind(server: LocalModelServer) -> None:
    pid = server.pid
    assert child_processes_on(server.port) == [pid]

    await server.stop()
    await server.stop()

    assert server.pid is None
    assert child_processes_on(server.port) == []


async def test_child_dies_with_its_parent(small_model_path: Path) -> None:
    port = free_port()
    script = textwrap.dedent(
        f"""
        import asyncio
        from pathlib import Path
        from botfactory.inference.local import LocalModelServer

        async def main():
            server = LocalModelServer(Path({str(small_model_path)!r}), port={port}, context_size=512, threads=1,
                                      start_timeout_s=120)
            await server.start()
            print(server.pid, flush=True)
            await asyncio.sleep(3600)

        asyncio.run(main())
        """
    )
    parent = await asyncio.create_subprocess_exec(sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE)
    try:
        assert parent.stdout is not None
        line = await asyncio.wait_for(parent.stdout.readline(), timeout=150)
        child = int(line)
        assert child_processes_on(port) == [child]
    finally:
        parent.kill()
        await parent.wait()

    for _ in range(100):
        if not child_processes_on(port):
            break
        await asyncio.sleep(0.1)
    assert child_processes_on(port) == []
