"""Operating the runtime from the command line: sessions, dead letters, kill switches, and the serve and worker
processes with their graceful stop.

The admin commands run in-process through ``main(argv)`` against a database an in-process runtime filled. The
long-running commands run as real processes (``botfactory serve``, ``botfactory worker``) whose model alias
points at a small OpenAI-compatible stand-in served by the test.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from botfactory.agents import Agent, Bot, BotRegistry, Engine
from botfactory.cli import main
from botfactory.config import Settings
from botfactory.inference import ModelRequest
from botfactory.runtime import Runtime, start_runtime
from botfactory.store import Store
from botfactory.testing import ScriptedModel, scripted_inference

pytestmark = pytest.mark.integration

BOTFACTORY = str(Path(sys.executable).with_name("botfactory"))


def echo(request: ModelRequest) -> str:
    last = next(m for m in reversed(request.messages) if m.role == "user")
    return f"echo: {last.content}"


def make_bots() -> list[Bot]:
    return [
        Bot(name="echo", agent=Agent(name="echo", instructions="Repeat the user.", model="small")),
        Bot(name="broken", agent=Agent(name="broken", instructions="Fail.", model="broken")),
    ]


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BOTFACTORY_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"


def with_runtime(action: Callable[[Runtime], Awaitable[Any]], *, run_worker: bool = True, max_attempts: int = 1) -> Any:
    """Run ``action`` on an in-process runtime (echo and broken bots, scripted models) on the test's database."""

    async def run() -> Any:
        settings = Settings.load(runtime={"max_attempts": max_attempts, "heartbeat_s": 0.2})
        models = {
            "small": ScriptedModel([echo], cycle=True, name="small"),
            "broken": ScriptedModel([RuntimeError("the model fell over")], cycle=True, name="broken"),
        }
        async with await Store.open(settings.resolved_database_url) as store:
            stack = await start_runtime(
                settings,
                store=store,
                engine=Engine(scripted_inference(models)),
                bots=BotRegistry(make_bots()),
                run_worker=run_worker,
                listen=False,
            )
            try:
                return await action(stack.runtime)
            finally:
                await stack.aclose(grace_s=0)

    return asyncio.run(run())


@pytest.fixture
def populated() -> None:
    """``s-done`` answered, ``s-dead`` dead-lettered, ``s-queued`` waiting for a worker."""

    async def answer(runtime: Runtime) -> None:
        done = await runtime.invoke("echo", session_id="s-done", text="hello", user_id="u1")
        assert done.reply == "echo: hello"
        dead = await runtime.invoke("broken", session_id="s-dead", text="please fail")
        assert dead.error_code == "dead_letter"

    with_runtime(answer)

    async def queue_one(runtime: Runtime) -> None:
        await runtime.enqueue("echo", session_id="s-queued", text="anyone there?", user_id="u2")

    with_runtime(queue_one, run_worker=False)


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


# sessions


def test_sessions_list_shows_state_and_filters(
    populated: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = {row["id"]: row for row in run_json(capsys, "sessions", "list")}
    assert set(rows) == {"s-done", "s-dead", "s-queued"}
    assert (rows["s-done"]["bot"], rows["s-done"]["user_id"], rows["s-done"]["state"]) == ("echo", "u1", "idle")
    assert (rows["s-queued"]["state"], rows["s-queued"]["pending"]) == ("waiting", 1)
    assert rows["s-dead"]["state"] == "idle"
    assert {r["id"] for r in run_json(capsys, "sessions", "list", "--bot", "echo")} == {"s-done", "s-queued"}
    assert len(run_json(capsys, "sessions", "list", "--limit", "1")) == 1

    # active: queued or running work, or a message within the idle timeout (here 1 ms: only queued work counts)
    assert {r["id"] for r in run_json(capsys, "sessions", "list", "--active")} == {"s-done", "s-dead", "s-queued"}
    monkeypatch.setenv("BOTFACTORY_RUNTIME__IDLE_TIMEOUT_S", "0.001")
    time.sleep(0.01)
    assert [r["id"] for r in run_json(capsys, "sessions", "list", "--active")] == ["s-queued"]

    assert main(["sessions", "list", "--active"]) == 0
    table = capsys.readouterr().out
    assert "s-queued" in table and "waiting" in table and "s-done" not in table
    assert main(["sessions", "list", "--bot", "nobody"]) == 0
    assert "no sessions" in capsys.readouterr().out


def test_sessions_show_prints_messages_turns_and_replies(populated: None, capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(capsys, "sessions", "show", "s-done")
    assert (data["id"], data["bot"], data["state"]) == ("s-done", "echo", "idle")
    assert [(m["role"], m["text"], m["status"]) for m in data["messages"]] == [
        ("user", "hello", "done"),
        ("assistant", "echo: hello", None),
    ]
    [turn] = data["turns"]
    assert (turn["status"], turn["reply"]) == ("completed", "echo: hello")

    assert main(["sessions", "show", "s-done"]) == 0
    out = capsys.readouterr().out
    assert "session s-done" in out and "echo: hello" in out and "completed" in out


def test_sessions_show_and_cancel_of_an_unknown_session_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sessions", "show", "nope"]) == 3
    assert "no session 'nope'" in capsys.readouterr().err
    assert main(["sessions", "cancel", "nope"]) == 3
    assert "no session 'nope'" in capsys.readouterr().err


def test_sessions_cancel_drops_queued_messages(populated: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sessions", "cancel", "s-queued"]) == 0
    assert "no turn was running; 1 queued message(s) cancelled" in capsys.readouterr().out
    data = run_json(capsys, "sessions", "show", "s-queued")
    assert [(m["text"], m["status"]) for m in data["messages"]] == [("anyone there?", "cancelled")]
    assert (data["state"], data["pending"]) == ("idle", 0)
    again = run_json(capsys, "sessions", "cancel", "s-queued")
    assert again == {"session_id": "s-queued", "turn_id": None, "running": False, "cancelled_messages": 0}


# inbox


def test_dead_letters_list_retry_and_discard(populated: None, capsys: pytest.CaptureFixture[str]) -> None:
    [dead] = run_json(capsys, "inbox", "dead-letters")
    assert (dead["session_id"], dead["bot"], dead["text"]) == ("s-dead", "broken", "please fail")
    assert "the model fell over" in dead["error"]
    assert run_json(capsys, "inbox", "dead-letters", "--bot", "echo") == []

    assert main(["inbox", "dead-letters"]) == 0
    table = capsys.readouterr().out
    assert dead["message_id"] in table
    assert "botfactory inbox retry MESSAGE_ID" in table

    assert main(["inbox", "retry", dead["message_id"]]) == 0
    assert f"message {dead['message_id']} queued again on session s-dead" in capsys.readouterr().out
    assert run_json(capsys, "inbox", "dead-letters") == []
    session = run_json(capsys, "sessions", "show", "s-dead")
    assert [(m["text"], m["status"]) for m in session["messages"] if m["role"] == "user"] == [
        ("please fail", "retried"),
        ("please fail", "pending"),
    ]
    assert main(["inbox", "retry", dead["message_id"]]) == 3
    assert "no dead letter" in capsys.readouterr().err

    # the retry fails again (max_attempts=1): a new dead letter to discard
    with_runtime(lambda runtime: _wait_idle(runtime, "s-dead"))
    [second] = run_json(capsys, "inbox", "dead-letters")
    assert second["message_id"] != dead["message_id"]


def test_discard_asks_unless_yes(
    populated: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    [dead] = run_json(capsys, "inbox", "dead-letters")
    monkeypatch.setattr(sys, "stdin", io.StringIO("n\n"))
    assert main(["inbox", "discard", dead["message_id"]]) == 130
    assert f"discard dead letter {dead['message_id']} for good? [y/N]" in capsys.readouterr().err
    assert len(run_json(capsys, "inbox", "dead-letters")) == 1

    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    assert main(["inbox", "discard", dead["message_id"]]) == 0
    assert "discarded" in capsys.readouterr().out
    assert run_json(capsys, "inbox", "dead-letters") == []
    assert main(["inbox", "discard", "-y", dead["message_id"]]) == 3
    assert "no dead letter" in capsys.readouterr().err


async def _wait_idle(runtime: Runtime, session_id: str) -> None:
    async with asyncio.timeout(20):
        while True:
            state = await runtime.queue.queue_state(session_id)
            if state is None or (state.pending == 0 and state.turn_id is None):
                return
            await asyncio.sleep(0.02)


# kill switches


def test_kill_switch_stops_the_bot_on_a_worker_until_switched_off(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kill-switch", "on", "--bot", "echo", "--reason", "incident [42]"]) == 0
    assert "kill switch on: bot 'echo'" in capsys.readouterr().out
    assert main(["kill-switch", "on", "--bot", "echo"]) == 0
    assert "already on" in capsys.readouterr().out
    assert run_json(capsys, "kill-switch", "list") == [{"kind": "bot", "name": "echo", "reason": "incident [42]"}]
    assert main(["kill-switch", "list"]) == 0
    assert "incident [42]" in capsys.readouterr().out  # printed as text, not read as markup

    stopped = with_runtime(lambda runtime: runtime.invoke("echo", session_id="k-1", text="hi"))
    assert (stopped.status, stopped.error_code) == ("failed", "kill_switch")
    assert "switched off by an operator (incident [42])" in stopped.reply

    assert main(["kill-switch", "off", "--bot", "echo"]) == 0
    assert "kill switch off: bot 'echo' runs again" in capsys.readouterr().out
    assert main(["kill-switch", "off", "--bot", "echo"]) == 0
    assert "was not on" in capsys.readouterr().out
    assert run_json(capsys, "kill-switch", "list") == []
    assert main(["kill-switch", "list"]) == 0
    assert "no kill switch is on" in capsys.readouterr().out
    answered = with_runtime(lambda runtime: runtime.invoke("echo", session_id="k-2", text="hi"))
    assert (answered.status, answered.reply) == ("completed", "echo: hi")


def test_kill_switch_for_agents_and_tools_and_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kill-switch", "on", "--agent", "support/github"]) == 0
    assert main(["kill-switch", "on", "--tool", "search_docs", "--reason", "index rebuild"]) == 0
    capsys.readouterr()
    assert run_json(capsys, "kill-switch", "list") == [
        {"kind": "agent", "name": "support/github", "reason": None},
        {"kind": "tool", "name": "search_docs", "reason": "index rebuild"},
    ]
    assert main(["kill-switch", "on"]) == 2
    assert "exactly one of --bot NAME, --agent NAME or --tool NAME" in capsys.readouterr().err
    assert main(["kill-switch", "off", "--bot", "a", "--tool", "b"]) == 2
    assert "exactly one" in capsys.readouterr().err
    assert main(["kill-switch", "on", "--bot", ""]) == 2
    assert "1 to 256 characters" in capsys.readouterr().err
    assert len(run_json(capsys, "kill-switch", "list")) == 2


# serve and worker as real processes


class OpenAIStandIn:
    """``POST /v1/chat/completions`` answering ``stand-in: <last user message>``; ``hold`` keeps answers back."""

    def __init__(self, *, hold: bool = False) -> None:
        self.received = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()
        self.calls = 0
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                stand_in.calls += 1
                stand_in.received.set()
                stand_in.release.wait(30)
                text = next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")
                payload = {
                    "choices": [
                        {"message": {"role": "assistant", "content": f"stand-in: {text}"}, "finish_reason": "stop"}
                    ],
                    "usage": {"prompt_tokens": 7, "completion_tokens": 3},
                }
                data = json.dumps(payload).encode()
                try:
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the worker gave up on the call

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


class Process:
    """A ``botfactory`` child process whose output is read line by line on threads."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.popen = subprocess.Popen(
            [BOTFACTORY, *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.popen.stdout, self.lines.put), daemon=True),
            threading.Thread(target=self._read, args=(self.popen.stderr, self.err.append), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: io.TextIOBase | None, sink: Callable[[str], None]) -> None:
        assert stream is not None
        for line in stream:
            sink(line)

    def wait_for_line(self, text: str, *, within: float = 60.0) -> str:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.popen.poll() is not None and self.lines.empty():
                    break
                continue
            self.out.append(line)
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r}; stdout: {self.out}; stderr: {self.err}")

    def wait_exit(self, *, within: float = 30.0) -> str:
        """Wait for the exit; return all of stdout."""
        self.popen.wait(within)
        for reader in self._readers:
            reader.join(5)
        while not self.lines.empty():
            self.out.append(self.lines.get())
        return "".join(self.out)

    def stop(self, sig: int = signal.SIGTERM, *, within: float = 30.0) -> str:
        """Send ``sig`` and wait for the exit; return all of stdout."""
        self.popen.send_signal(sig)
        return self.wait_exit(within=within)

    @property
    def stderr(self) -> str:
        return "".join(self.err)

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)
        for reader in self._readers:
            reader.join(5)
        for stream in (self.popen.stdout, self.popen.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def child_env(home: Path, tmp_path: Path, seeded_database: Path) -> Iterator[Callable[..., dict[str, str]]]:
    """Environment for child processes: the test's home (seeded), an ``echo`` bot, models on a stand-in."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(seeded_database, home / "botfactory.db")
    bots_dir = tmp_path / "bots"
    bots_dir.mkdir()
    (bots_dir / "echo.py").write_text(
        "from botfactory.agents import Agent, Bot\n\n"
        'bot = Bot(name="echo", agent=Agent(name="echo", instructions="Answer.", model="small"))\n'
    )
    stand_ins: list[OpenAIStandIn] = []

    def make(stand_in: OpenAIStandIn, **runtime: float) -> dict[str, str]:
        stand_ins.append(stand_in)
        model = {"provider": "openai", "model": "stand-in", "base_url": stand_in.url, "max_retries": 0}
        env = {
            **os.environ,
            "BOTFACTORY_HOME": str(home),
            "BOTFACTORY_BOTS_DIR": str(bots_dir),
            "BOTFACTORY_MODELS": json.dumps({"large": model, "small": model}),
            "PYTHONUNBUFFERED": "1",
            "COLUMNS": "200",
        }
        for key, value in runtime.items():
            env[f"BOTFACTORY_RUNTIME__{key.upper()}"] = str(value)
        return env

    yield make
    for stand_in in stand_ins:
        stand_in.close()


def enqueue(text: str, session_id: str = "w-1") -> None:
    """Queue a message for ``echo`` from this process, as ``serve`` would."""
    with_runtime(lambda runtime: runtime.enqueue("echo", session_id=session_id, text=text), run_worker=False)


def session(session_id: str = "w-1") -> dict[str, Any]:
    async def read(runtime: Runtime) -> dict[str, Any]:
        view = await runtime.session(session_id)
        state = await runtime.queue.queue_state(session_id)
        return {**view.to_dict(), "leased": state.leased if state else False}

    result: dict[str, Any] = with_runtime(read, run_worker=False)
    return result


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_worker_lets_its_running_turn_finish_on_a_signal_and_exits_0(
    child_env: Callable[..., dict[str, str]], sig: int
) -> None:
    stand_in = OpenAIStandIn(hold=True)
    worker = Process(["worker", "--concurrency", "4"], child_env(stand_in, shutdown_grace_s=20))
    try:
        started = worker.wait_for_line("botfactory worker")
        assert "started: up to 4 turns at once" in started and "echo" in started
        enqueue("finish me")
        assert stand_in.received.wait(20), "the worker never called the model"

        worker.popen.send_signal(sig)
        worker.wait_for_line("1 running turn(s) have 20 s to finish")
        assert worker.popen.poll() is None  # waiting for the turn, within the grace period
        stand_in.release.set()
        out = worker.wait_exit()
        assert worker.popen.returncode == 0, worker.stderr
        assert "botfactory worker stopped: 1 running turn(s) finished, 0 released" in out
    finally:
        worker.close()
    data = session()
    assert [(t["status"], t["reply"]) for t in data["turns"]] == [("completed", "stand-in: finish me")]
    assert (data["state"], data["leased"]) == ("idle", False)


def test_worker_releases_an_unfinished_turn_after_the_grace_period_for_another_worker(
    child_env: Callable[..., dict[str, str]],
) -> None:
    stand_in = OpenAIStandIn(hold=True)
    worker = Process(["worker"], child_env(stand_in, shutdown_grace_s=0.2, lease_s=60))
    try:
        worker.wait_for_line("botfactory worker")
        enqueue("too slow")
        assert stand_in.received.wait(20)
        out = worker.stop(signal.SIGTERM)
        assert worker.popen.returncode == 0, worker.stderr
        assert "botfactory worker stopped: 0 running turn(s) finished, 1 released" in out
    finally:
        worker.close()
        stand_in.release.set()
    released = session()
    assert [t["status"] for t in released["turns"]] == ["running"]
    assert released["leased"] is False  # not held for the 60 s lease: any worker resumes it now

    started = time.monotonic()

    async def resume(runtime: Runtime) -> dict[str, Any]:
        await _wait_idle(runtime, "w-1")
        return (await runtime.session("w-1")).to_dict()

    resumed = with_runtime(resume, max_attempts=5)
    assert time.monotonic() - started < 15
    assert [(t["status"], t["reply"]) for t in resumed["turns"]] == [("completed", "echo: too slow")]


def test_sessions_cancel_stops_a_turn_running_in_a_worker_process(
    child_env: Callable[..., dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    stand_in = OpenAIStandIn(hold=True)
    worker = Process(["worker"], child_env(stand_in, heartbeat_s=0.2))
    try:
        worker.wait_for_line("botfactory worker")
        enqueue("never mind")
        assert stand_in.received.wait(20)
        assert main(["sessions", "cancel", "w-1"]) == 0
        assert "is stopping" in capsys.readouterr().out

        async def cancelled(runtime: Runtime) -> list[str]:
            async with asyncio.timeout(20):
                while (turns := await runtime.store.list_turns("w-1"))[0].status == "running":  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            return [turn.status for turn in turns]

        assert with_runtime(cancelled, run_worker=False) == ["cancelled"]
        out = worker.stop(signal.SIGTERM)
        assert worker.popen.returncode == 0, worker.stderr
        assert "botfactory worker stopped: 0 running turn(s) finished, 0 released" in out
    finally:
        worker.close()
    data = session()
    assert [(m["text"], m["status"]) for m in data["messages"]] == [("never mind", "cancelled")]


def test_serve_takes_messages_and_a_separate_worker_answers_them(
    child_env: Callable[..., dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    stand_in = OpenAIStandIn()
    env = child_env(stand_in)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    serve = Process(["serve", "--port", str(port)], env)
    worker = Process(["worker"], env)
    try:
        up = serve.wait_for_line("botfactory serve is up")
        assert f"http://127.0.0.1:{port}" in up
        assert "botfactory keys create --bot NAME" in serve.wait_for_line("warning: there are no API keys yet")
        assert main(["keys", "create", "--bot", "echo", "--json"]) == 0  # works at once on the running server
        key = json.loads(capsys.readouterr().out)["key"]
        worker.wait_for_line("botfactory worker")
        anonymous = httpx.post(
            f"http://127.0.0.1:{port}/v1/bots/echo/sessions/p-1/messages", json={"text": "hi"}, trust_env=False
        )
        assert anonymous.status_code == 401  # serve requires an API key, even from this machine
        headers = {"authorization": f"Bearer {key}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, trust_env=False, timeout=30) as http:
            posted = http.post("/v1/bots/echo/sessions/p-1/messages", json={"text": "across processes"})
            assert posted.status_code == 202
            data = http.get("/v1/sessions/p-1").json()
            assert data["messages"][0]["text"] == "across processes"
            with http.stream("GET", "/v1/sessions/p-1/events") as stream:
                lines = stream.iter_lines()
                finished: dict[str, Any] = {}
                name = ""
                for line in lines:
                    if line.startswith("event: "):
                        name = line.removeprefix("event: ")
                    elif line.startswith("data: ") and name == "turn_finished":
                        finished = json.loads(line.removeprefix("data: "))
                        break
                assert finished["reply"] == "stand-in: across processes"
                data = http.get("/v1/sessions/p-1").json()
                assert data["state"] == "idle"
                assert [m["text"] for m in data["messages"]] == ["across processes", "stand-in: across processes"]

                # stopping serve ends the open event stream instead of waiting for the client to leave
                serve.popen.send_signal(signal.SIGTERM)
                signalled = time.monotonic()
                assert [line for line in lines if line] == []
                assert time.monotonic() - signalled < 5
            assert "botfactory serve stopped" in serve.wait_exit(within=10)
        assert "botfactory worker stopped" in worker.stop()
        assert (serve.popen.returncode, worker.popen.returncode) == (0, 0)
    finally:
        serve.close()
        worker.close()


def test_up_answers_and_exits_0_on_sigterm(child_env: Callable[..., dict[str, str]]) -> None:
    env = child_env(OpenAIStandIn())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    up = Process(["up", "--port", str(port)], env)
    try:
        up.wait_for_line("botfactory is up")
        up.wait_for_line("local development mode: requests from this machine need no API key")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=30) as http:
            reply = http.post("/v1/bots/echo/invoke", json={"session_id": "u-1", "text": "one process"})
            assert reply.json()["reply"] == "stand-in: one process"
        out = up.stop(signal.SIGTERM)
        assert up.popen.returncode == 0, up.stderr
        assert "stopping (SIGTERM)" in out and "botfactory stopped" in out
    finally:
        up.close()


def test_worker_serves_its_own_metrics_behind_an_api_key(
    child_env: Callable[..., dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert main(["keys", "create", "--all-bots", "--name", "prometheus", "--json"]) == 0
    key = json.loads(capsys.readouterr().out)["key"]
    worker = Process(["worker", "--metrics-port", str(port)], child_env(OpenAIStandIn()))
    try:
        worker.wait_for_line(f"metrics at http://127.0.0.1:{port}/metrics")
        enqueue("count me")
        with_runtime(lambda runtime: _wait_idle(runtime, "w-1"), run_worker=False)
        url = f"http://127.0.0.1:{port}/metrics"
        assert httpx.get(url).status_code == 401
        scraped = httpx.get(url, headers={"authorization": f"Bearer {key}"})
        assert scraped.status_code == 200
        # The turn ran in the worker process: only its own scrape can show it.
        assert 'botfactory_turns_total{bot="echo",status="completed"} 1.0' in scraped.text
        out = worker.stop(signal.SIGTERM)
        assert worker.popen.returncode == 0, worker.stderr
        assert "botfactory worker stopped" in out
    finally:
        worker.close()
