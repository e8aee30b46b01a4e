"""LocalModelServer's process supervision, against a fake llama.cpp child (fast, no model)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from botfactory.errors import ConfigError, ModelUnavailableError
from botfactory.inference.base import ModelRequest
from botfactory.inference.local import LocalModelServer
from botfactory.messages import Message

FAKE = Path(__file__).with_name("fake_llama_server.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(")")[-1].split()[0] != "Z"


class FakeServer(LocalModelServer):
    def __init__(self, modes: list[str], **kwargs: object) -> None:
        options: dict[str, object] = {
            "port": free_port(),
            "context_size": 512,
            "threads": 1,
            "start_timeout_s": 10.0,
            "restart_backoff_s": 0.01,
            "stop_grace_s": 1.0,
        }
        options.update(kwargs)
        super().__init__(Path("/nonexistent/model.gguf"), **options)  # type: ignore[arg-type]
        self.modes = modes
        self.launched: list[str] = []

    def _command(self) -> list[str]:
        mode = self.modes.pop(0) if len(self.modes) > 1 else self.modes[0]
        self.launched.append(mode)
        return [sys.executable, str(FAKE), str(self.port), mode]


@pytest.fixture
async def servers() -> AsyncIterator[list[LocalModelServer]]:
    started: list[LocalModelServer] = []
    yield started
    for server in started:
        await server.stop()


async def test_start_serves_and_requests_prompt_cache(servers: list[LocalModelServer]) -> None:
    server = FakeServer(["ok"])
    servers.append(server)
    await server.start()

    assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
    assert server.pid is not None and alive(server.pid)
    model = server.chat_model("small")
    try:
        response = await model.complete(ModelRequest(messages=(Message(role="user", content="hi"),), max_tokens=4))
    finally:
        await model.aclose()
    sent = json.loads(response.message.content)
    assert sent["cache_prompt"] is True
    assert model.profile.native_tool_calling is False


async def test_supervisor_restarts_a_killed_child_and_calls_ride_through(servers: list[LocalModelServer]) -> None:
    server = FakeServer(["ok"], restart_backoff_s=0.5)
    servers.append(server)
    await server.start()
    first = server.pid
    assert first is not None
    model = server.chat_model("small", max_retries=2)

    os.kill(first, signal.SIGKILL)
    try:
        # issued while the child is dead: the retry waits for the restarted child instead of failing
        response = await model.complete(ModelRequest(messages=(Message(role="user", content="hi"),)))
    finally:
        await model.aclose()

    assert json.loads(response.message.content)["messages"] == [{"role": "user", "content": "hi"}]
    assert server.restarts == 1
    assert server.pid is not None and server.pid != first and alive(server.pid)
    assert not alive(first)


async def test_supervisor_gives_up_after_quick_failures(servers: list[LocalModelServer]) -> None:
    # every child dies 0.8 s after it starts serving: the first start succeeds, the restarts do not last
    server = FakeServer(["crash-soon"], max_quick_failures=2, quick_failure_s=60)
    servers.append(server)
    await server.start()

    for _ in range(300):
        if server.failed:
            break
        await _tick()

    assert server.failed
    assert server.restarts == 2
    assert server.pid is None
    with pytest.raises(ModelUnavailableError, match="kept crashing"):
        await server.wait_ready(timeout_s=1)


async def test_child_that_exits_while_loading_reports_its_log(servers: list[LocalModelServer]) -> None:
    server = FakeServer(["exit-now"])
    servers.append(server)
    with pytest.raises(ModelUnavailableError) as info:
        await server.start()
    assert "exited with status 3" in info.value.message
    assert "bad magic" in info.value.message
    assert server.pid is None


async def test_start_timeout_kills_the_child(servers: list[LocalModelServer]) -> None:
    server = FakeServer(["unhealthy"], start_timeout_s=1.0)
    servers.append(server)
    with pytest.raises(ModelUnavailableError, match="not healthy after 1s"):
        await server.start()
    assert server.pid is None


async def test_stop_is_idempotent_and_kills_a_child_ignoring_sigterm() -> None:
    server = FakeServer(["ignore-term"], stop_grace_s=0.5)
    await server.start()
    pid = server.pid
    assert pid is not None

    await server.stop()
    await server.stop()

    assert server.pid is None
    assert not alive(pid)


def test_refuses_non_loopback_host() -> None:
    with pytest.raises(ConfigError, match="loopback"):
        LocalModelServer(Path("m.gguf"), port=1, context_size=512, threads=1, host="0.0.0.0")


async def _tick() -> None:
    await asyncio.sleep(0.05)
