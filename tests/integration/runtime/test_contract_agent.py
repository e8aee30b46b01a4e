"""Hosting external agent apps (the AgentCore runtime contract): a bot whose agent is an app written with the real
``bedrock-agentcore`` SDK, reached over real HTTP on 127.0.0.1, or started by botfactory as a process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from contract_app import AppState, DisconnectProbe, build_app
from harness import MakeRuntime

from botfactory.agents import (
    Bot,
    ContractAgent,
    ContractChunk,
    Engine,
    Event,
    Step,
    TurnInput,
    contract_session_id,
)
from botfactory.errors import ExternalAgentBusyError, ExternalAgentError, KillSwitchError
from botfactory.inference import Inference
from botfactory.testing import serve_app

APP_SCRIPT = Path(__file__).with_name("contract_app.py")


@contextlib.asynccontextmanager
async def serving_app(state: AppState) -> AsyncIterator[str]:
    """The SDK app on a free loopback port, in this event loop; yields its base URL."""
    async with serve_app(DisconnectProbe(build_app(state), state)) as base_url:
        yield base_url


@pytest.fixture
def state() -> AppState:
    return AppState()


@pytest.fixture
async def app_url(state: AppState) -> AsyncIterator[str]:
    async with serving_app(state) as url:
        yield url


class Steps:
    """Records steps and events as the runtime would."""

    def __init__(self) -> None:
        self.steps: list[Step] = []
        self.events: list[Event] = []

    async def record(self, step: Step) -> None:
        self.steps.append(step)

    async def on_event(self, event: Event) -> None:
        self.events.append(event)


def turn(text: str = "hello there", *, session_id: str = "s-1", turn_id: str = "t-1") -> TurnInput:
    return TurnInput(session_id=session_id, turn_id=turn_id, text=text, user_id="u-7")


async def run(agent: ContractAgent, given: TurnInput, steps: Steps | None = None, **options: Any) -> str:
    engine = Engine(Inference({}))
    recorder = steps or Steps()
    result = await engine.run_turn(agent, given, recorder=recorder, on_event=recorder.on_event, **options)
    return result.reply


# The contract, one call at a time


async def test_reply_comes_from_the_app_with_a_stable_contract_session_per_botfactory_session(
    app_url: str, state: AppState
) -> None:
    agent = ContractAgent(name="remote", url=app_url)
    try:
        assert await run(agent, turn("first", session_id="s-1", turn_id="t-1")) == "app: first"
        assert await run(agent, turn("second", session_id="s-1", turn_id="t-2")) == "app: second"
        assert await run(agent, turn("other", session_id="s-2", turn_id="t-3")) == "app: other"
    finally:
        await agent.aclose()

    first, second, other = state.calls
    assert first["payload"] == {"prompt": "first", "user_id": "u-7"}
    assert first["session_id"] == second["session_id"] == contract_session_id("s-1")
    assert other["session_id"] == contract_session_id("s-2") != first["session_id"]
    assert 33 <= len(first["session_id"]) <= 256
    assert first["request_id"] == "t-1:1"  # the step's idempotency key


async def test_the_call_carries_the_turns_trace_and_the_botfactory_session(
    app_url: str, state: AppState, spans: Any
) -> None:
    agent = ContractAgent(name="remote", url=app_url)
    try:
        await run(agent, turn("traced", session_id="s-9"))
    finally:
        await agent.aclose()
    [agent_span] = [s for s in spans.get_finished_spans() if s.name == "invoke_agent remote"]
    headers = state.calls[0]["headers"]
    assert headers["traceparent"].split("-")[1] == format(agent_span.context.trace_id, "032x")
    assert headers["x-amzn-bedrock-agentcore-runtime-custom-botfactory-session-id"] == "s-9"


async def test_streamed_chunks_become_turn_events_and_make_the_reply(app_url: str, state: AppState) -> None:
    state.mode = "stream"
    agent = ContractAgent(name="remote", url=app_url)
    steps = Steps()
    try:
        assert await run(agent, turn("hello there"), steps) == "app: hello there"
    finally:
        await agent.aclose()
    chunks = [e for e in steps.events if isinstance(e, ContractChunk)]
    assert [c.text for c in chunks] == ["app:", " hello", " there", ""]
    assert chunks[0].to_dict()["type"] == "contract_chunk"
    assert chunks[-1].raw == '{"event": "done"}'
    assert steps.events[-1].to_dict()["type"] == "agent_finished"


async def test_a_healthy_busy_app_is_waited_for_before_the_call(app_url: str, state: AppState) -> None:
    state.busy = True
    agent = ContractAgent(name="remote", url=app_url, busy_timeout_s=10)
    asyncio.get_running_loop().call_later(0.4, setattr, state, "busy", False)
    try:
        call = asyncio.create_task(run(agent, turn("wait for me")))
        await asyncio.sleep(0.25)
        assert state.calls == []  # still busy: nothing sent yet
        assert state.pings >= 2  # polled with backoff
        assert await call == "app: wait for me"
    finally:
        await agent.aclose()


async def test_an_app_busy_for_too_long_fails_the_attempt_with_a_retryable_error(app_url: str, state: AppState) -> None:
    state.busy = True
    agent = ContractAgent(name="remote", url=app_url, busy_timeout_s=0.3)
    try:
        with pytest.raises(ExternalAgentBusyError, match=r"stayed HealthyBusy for 0\.3 s") as raised:
            await run(agent, turn())
    finally:
        await agent.aclose()
    assert raised.value.retryable
    assert state.calls == []


async def test_an_app_error_is_a_retryable_error_that_names_the_app(app_url: str, state: AppState) -> None:
    state.mode = "fail"
    agent = ContractAgent(name="remote", url=app_url)
    try:
        with pytest.raises(ExternalAgentError, match="the remote agent app answered 500") as raised:
            await run(agent, turn())
    finally:
        await agent.aclose()
    assert raised.value.retryable and raised.value.code == "external_agent_error"


async def test_an_unreachable_app_fails_clearly() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    agent = ContractAgent(name="remote", url=f"http://127.0.0.1:{port}")
    try:
        with pytest.raises(ExternalAgentError, match="cannot reach the remote agent app"):
            await run(agent, turn())
    finally:
        await agent.aclose()


async def test_a_resumed_turn_replays_the_recorded_reply_and_never_calls_the_app_twice(
    app_url: str, state: AppState
) -> None:
    agent = ContractAgent(name="remote", url=app_url)
    first = Steps()
    try:
        assert await run(agent, turn("do it once"), first) == "app: do it once"
        assert [(s.position, s.name, s.ok) for s in first.steps] == [(1, "remote", True)]
        assert await run(agent, turn("do it once"), Steps(), replay=first.steps) == "app: do it once"
    finally:
        await agent.aclose()
    assert len(state.calls) == 1


async def test_the_guard_is_asked_before_the_call_and_a_kill_switch_stops_it(app_url: str, state: AppState) -> None:
    class SwitchedOff:
        def __init__(self) -> None:
            self.asked: list[tuple[str, str]] = []

        async def before_model_call(self, *, agent_path: str, model: str, prompt_chars: int) -> None:
            self.asked.append((agent_path, model))
            raise KillSwitchError("the remote agent is switched off by an operator")

        async def before_tool_call(self, *, agent_path: str, tool: str, is_agent: bool) -> None:
            raise AssertionError("not a tool call")

    guard = SwitchedOff()
    agent = ContractAgent(name="remote", url=app_url, model="small")
    try:
        with pytest.raises(KillSwitchError):
            await run(agent, turn(), guard=guard)
    finally:
        await agent.aclose()
    assert guard.asked == [("remote", "small")]
    assert state.calls == []


def test_a_contract_agent_needs_exactly_one_of_url_and_command() -> None:
    with pytest.raises(ValueError, match="exactly one of url= and command="):
        ContractAgent(name="remote")
    with pytest.raises(ValueError, match="exactly one of url= and command="):
        ContractAgent(name="remote", url="http://127.0.0.1:1", command=["app"])
    with pytest.raises(ValueError, match="non-empty list"):
        ContractAgent(name="remote", command="python app.py")


# Through the durable runtime


async def test_a_bot_hosting_an_app_answers_through_the_inbox_and_streams_its_chunks(
    make_runtime: MakeRuntime, app_url: str, state: AppState
) -> None:
    state.mode = "stream"
    agent = ContractAgent(name="remote", url=app_url)
    harness = await make_runtime(bots=[Bot(name="hosted", agent=agent)])
    events: list[dict[str, Any]] = []

    async def collect(event: dict[str, Any]) -> None:
        events.append(event)

    try:
        result = await harness.runtime.invoke(
            "hosted", session_id="h-1", text="hello from the inbox", user_id="u-1", on_event=collect
        )
    finally:
        await agent.aclose()
    assert (result.status, result.reply) == ("completed", "app: hello from the inbox")
    texts = [e["text"] for e in events if e["type"] == "contract_chunk"]
    assert "".join(texts) == "app: hello from the inbox" and len(texts) == 6
    assert await harness.replies("h-1") == ["app: hello from the inbox"]
    assert state.calls[0]["session_id"] == contract_session_id("h-1")


async def test_a_failing_app_is_retried_and_the_turn_completes(
    make_runtime: MakeRuntime, app_url: str, state: AppState
) -> None:
    state.fail_times = 1
    agent = ContractAgent(name="remote", url=app_url)
    harness = await make_runtime(bots=[Bot(name="hosted", agent=agent)], max_attempts=3)
    try:
        result = await harness.runtime.invoke("hosted", session_id="h-2", text="try again")
    finally:
        await agent.aclose()
    assert (result.status, result.reply) == ("completed", "app: try again")
    [done] = await harness.turns("h-2")
    assert done.attempts == 2
    assert len(state.calls) == 2


async def test_an_app_that_keeps_failing_ends_in_the_dead_letters_with_the_reason(
    make_runtime: MakeRuntime, app_url: str, state: AppState
) -> None:
    state.mode = "fail"
    agent = ContractAgent(name="remote", url=app_url)
    harness = await make_runtime(bots=[Bot(name="hosted", agent=agent)], max_attempts=2)
    try:
        result = await harness.runtime.invoke("hosted", session_id="h-3", text="never works")
    finally:
        await agent.aclose()
    assert result.status == "failed" and result.error_code == "dead_letter"
    [dead] = await harness.runtime.dead_letters()
    assert "the remote agent app answered 500" in (dead.error or "")


async def test_cancelling_the_session_aborts_the_call_in_flight(
    make_runtime: MakeRuntime, app_url: str, state: AppState
) -> None:
    state.mode = "hang"
    agent = ContractAgent(name="remote", url=app_url)
    harness = await make_runtime(bots=[Bot(name="hosted", agent=agent)])
    try:
        await harness.runtime.enqueue("hosted", session_id="h-4", text="take forever")
        assert await asyncio.to_thread(state.started.wait, 10)
        await harness.runtime.cancel("h-4")
        [turn_record] = await harness.wait_turns("h-4", 1, within=10)
        assert turn_record.status == "cancelled"
        # the connection is closed at once: the app's server hears the client go away (the SDK then tears its
        # handler down when it next yields)
        assert await asyncio.to_thread(state.disconnected.wait, 2), "the call was not aborted"
    finally:
        await agent.aclose()


# Apps botfactory starts itself


async def test_an_app_given_as_a_command_is_started_on_first_use_and_stopped_on_close() -> None:
    agent = ContractAgent(name="local-app", command=[sys.executable, str(APP_SCRIPT)], start_timeout_s=30)
    try:
        reply = await run(agent, turn("hi"))
        pid = agent.process_id
        assert pid is not None and reply == f"pid {pid}: hi"
        assert await run(agent, turn("again", turn_id="t-2")) == f"pid {pid}: again"  # the same process
    finally:
        await agent.aclose()
    assert agent.process_id is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_an_app_that_crashed_is_started_again_on_the_next_call() -> None:
    agent = ContractAgent(name="local-app", command=[sys.executable, str(APP_SCRIPT)], start_timeout_s=30)
    try:
        await run(agent, turn("one"))
        first = agent.process_id
        assert first is not None
        os.kill(first, signal.SIGKILL)
        await asyncio.sleep(0.2)
        reply = await run(agent, turn("two", turn_id="t-2"))
        second = agent.process_id
        assert second is not None and second != first and reply == f"pid {second}: two"
    finally:
        await agent.aclose()


async def test_an_app_that_dies_at_start_fails_with_its_output() -> None:
    agent = ContractAgent(
        name="local-app",
        command=[sys.executable, str(APP_SCRIPT)],
        env={"CONTRACT_APP_CRASH": "1"},
        start_timeout_s=30,
    )
    try:
        with pytest.raises(ExternalAgentError, match="exited with status 3") as raised:
            await run(agent, turn())
    finally:
        await agent.aclose()
    assert "cannot load my model (missing weights)" in raised.value.message


async def test_an_app_that_never_answers_ping_is_stopped_and_reported(tmp_path: Path) -> None:
    script = tmp_path / "silent.py"
    script.write_text("import time\nprint('starting slowly', flush=True)\ntime.sleep(60)\n")
    agent = ContractAgent(name="local-app", command=[sys.executable, str(script)], start_timeout_s=1.0)
    with pytest.raises(ExternalAgentError, match=r"did not answer /ping within 1 s") as raised:
        await run(agent, turn())
    assert "starting slowly" in raised.value.message
    assert agent.process_id is None
