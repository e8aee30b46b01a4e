"""``agentcore_port``: ``botfactory up`` also serves the AgentCore contract on its own port, and stops it on SIGTERM."""

from __future__ import annotations

import signal
import socket
from collections.abc import Callable

import httpx
import pytest

# The serve-and-worker suite's helpers and fixtures: a seeded home, an ``echo`` bot, models on a stand-in server.
from test_runtime_cli import OpenAIStandIn, Process, child_env, home  # noqa: F401

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_up_serves_the_contract_on_agentcore_port_and_stops_it_gracefully(
    child_env: Callable[..., dict[str, str]],  # noqa: F811 - the imported fixture
) -> None:
    port, contract_port = free_port(), free_port()
    env = {
        **child_env(OpenAIStandIn()),
        "BOTFACTORY_AGENTCORE_PORT": str(contract_port),
        "BOTFACTORY_AGENTCORE_BOT": "echo",
    }
    up = Process(["up", "--port", str(port)], env)
    try:
        up.wait_for_line("botfactory is up")
        assert f"http://127.0.0.1:{contract_port}/invocations" in up.wait_for_line("AgentCore contract also at")
        with httpx.Client(base_url=f"http://127.0.0.1:{contract_port}", trust_env=False, timeout=30) as http:
            assert http.get("/ping").json()["status"] == "Healthy"
            reply = http.post("/invocations", json={"prompt": "over the contract port"})
            assert reply.json()["result"] == "stand-in: over the contract port"
            assert http.get("/v1/bots").status_code == 404  # only the contract on this port
        out = up.stop(signal.SIGTERM)
        assert up.popen.returncode == 0, up.stderr
        assert "botfactory stopped" in out
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{contract_port}/ping", trust_env=False)
    finally:
        up.close()
