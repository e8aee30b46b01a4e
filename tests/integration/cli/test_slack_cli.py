"""``botfactory slack send`` and ``slack standin``: the laptop tour of the Slack path, against real servers.

``send`` runs in-process through ``main(argv)`` against a platform served by uvicorn on 127.0.0.1 that posts its
replies to a Slack stand-in; ``standin`` runs as a real process, stopped with Ctrl-C (SIGINT).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from botfactory.cli import main
from botfactory.config import Settings
from botfactory.inference import ModelRequest
from botfactory.memory import OnnxMiniLMEmbedder
from botfactory.server import Platform, create_app
from botfactory.testing import ScriptedModel, SlackStandIn, run_standin_server, scripted_inference, serve_app

pytestmark = pytest.mark.integration

BOTFACTORY = str(Path(sys.executable).with_name("botfactory"))
SECRET = "laptop-signing-secret"


def echo(request: ModelRequest) -> str:
    last = next(m for m in reversed(request.messages) if m.role == "user")
    return f"echo: {last.content}"


@pytest.fixture
def slack() -> Iterator[tuple[SlackStandIn, str]]:
    standin = SlackStandIn(token="xoxb-demo")
    with run_standin_server(standin) as url:
        yield standin, url


@pytest.fixture(autouse=True)
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's settings: the same signing secret the server has (as in the tour), nothing else."""
    monkeypatch.setenv("BOTFACTORY_HOME", str(tmp_path / "cli-home"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BOTFACTORY_SLACK_SIGNING_SECRET", SECRET)


@pytest.fixture
async def served(
    tmp_path: Path, seeded_database: Path, embedder: OnnxMiniLMEmbedder, slack: tuple[SlackStandIn, str]
) -> AsyncIterator[str]:
    """A platform answering Slack with the echo bot on a real uvicorn server; yields its base URL."""
    _, url = slack
    home = tmp_path / "server-home"
    (home / "bots").mkdir(parents=True)
    shutil.copy(seeded_database, home / "botfactory.db")
    (home / "bots" / "echo.py").write_text(
        "from botfactory.agents import Agent, Bot\n"
        'bot = Bot(name="echo", agent=Agent(name="echo", instructions="Repeat.", model="small"))\n'
    )
    settings = Settings.load(
        home=home,
        bots_dir=home / "bots",
        slack_signing_secret=SecretStr(SECRET),
        slack_bot_token=SecretStr("xoxb-demo"),
        slack_bot="echo",
        slack_api_url=f"{url}/api/",
    )
    inference = scripted_inference({"small": ScriptedModel([echo], cycle=True), "large": ScriptedModel([])})
    platform = await Platform.start(settings, inference=inference, embedder=embedder)
    try:
        async with serve_app(create_app(platform)) as base_url:
            yield base_url
    finally:
        await platform.aclose()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def wait_for_text(standin: SlackStandIn, text: str, *, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not any(p.text == text for p in standin.posts):
        assert time.monotonic() < deadline, standin.posts
        await asyncio.sleep(0.02)


async def test_send_signs_a_message_and_the_reply_lands_in_the_standins_thread(
    served: str, slack: tuple[SlackStandIn, str], capsys: pytest.CaptureFixture[str]
) -> None:
    standin, _ = slack
    assert await asyncio.to_thread(main, ["slack", "send", "how do I get a seat?", "--url", served, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["status"] == 200
    assert result["session_id"] == f"T0DEMO:C0DEMO:{result['ts']}"
    await wait_for_text(standin, "echo: how do I get a seat?")
    [post] = standin.posts
    assert (post.channel, post.thread_ts) == ("C0DEMO", result["ts"])

    # a follow-up in the same thread continues that session, printed for people this time
    argv = ["slack", "send", "and a second one?", "--url", served, "--thread", result["ts"], "--channel", "C0DEMO"]
    assert await asyncio.to_thread(main, argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("200 OK") and f"session T0DEMO:C0DEMO:{result['ts']}" in out
    await wait_for_text(standin, "echo: and a second one?")
    assert [p.thread_ts for p in standin.posts] == [result["ts"], result["ts"]]


async def test_send_with_another_secret_than_the_servers_exits_non_zero_saying_why(
    served: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BOTFACTORY_SLACK_SIGNING_SECRET", "not-the-servers-secret")
    assert await asyncio.to_thread(main, ["slack", "send", "hello", "--url", served]) == 2
    captured = capsys.readouterr()
    assert captured.out.startswith("401")
    assert "invalid_signature" in captured.err and "BOTFACTORY_SLACK_SIGNING_SECRET" in captured.err


def test_send_without_a_signing_secret_refuses_before_sending(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("BOTFACTORY_SLACK_SIGNING_SECRET")
    assert main(["slack", "send", "hello", "--url", "http://127.0.0.1:9"]) == 2
    assert "set BOTFACTORY_SLACK_SIGNING_SECRET" in capsys.readouterr().err


def test_send_as_a_named_app_uses_its_secret_and_an_unknown_app_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("BOTFACTORY_SLACK_SIGNING_SECRET")
    monkeypatch.setenv("BOTFACTORY_SLACK_APPS", '{"ops": {"signing_secret": "ops-secret", "bot_token": "xoxb-o"}}')
    assert main(["slack", "send", "hello", "--app", "hr", "--url", "http://127.0.0.1:9"]) == 2
    assert "no Slack app named 'hr'" in capsys.readouterr().err
    # the right app's secret is found; the send itself then fails on the closed port
    assert main(["slack", "send", "hello", "--app", "ops", "--url", "http://127.0.0.1:9"]) == 1
    assert "no botfactory answers at http://127.0.0.1:9" in capsys.readouterr().err


def test_standin_prints_each_post_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    from slack_sdk import WebClient

    port = free_port()
    process = subprocess.Popen(
        [BOTFACTORY, "slack", "standin", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"PATH": "/usr/bin:/bin", "BOTFACTORY_HOME": str(tmp_path), "COLUMNS": "200"},
    )
    try:
        assert process.stdout is not None
        assert "Slack stand-in on" in process.stdout.readline()
        client = WebClient(token="xoxb-demo", base_url=f"http://127.0.0.1:{port}/api/")
        deadline = time.monotonic() + 10
        while True:
            try:
                ts = client.chat_postMessage(channel="C0DEMO", thread_ts="1.000", text="hello from a bot")["ts"]
                break
            except OSError:
                assert time.monotonic() < deadline, "the stand-in never started listening"
                time.sleep(0.05)
        client.chat_update(channel="C0DEMO", ts=ts, text="edited")
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=15)
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    assert process.returncode == 0, err
    assert f"posted C0DEMO thread 1.000 ts={ts}: hello from a bot" in out
    assert f"updated C0DEMO thread 1.000 ts={ts}: edited" in out
    assert "stand-in stopped" in out
