"""End to end: the shipped example bot, a Strands agent served with the real ``bedrock-agentcore`` SDK, started by
botfactory as a process, with botfactory's inference endpoint (scripted models behind it) as its model."""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from serving import serving

from botfactory.agents import BotContext, ContractAgent
from botfactory.runtime.limits import utc_day
from botfactory.server import Platform
from botfactory.testing import ScriptedModel, call

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "agentcore_strands"
QUESTION = "How many words are in 'the quick brown fox'?"


def example_bot_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("agentcore_strands_example_bot", EXAMPLE / "bots" / "bot.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_the_strands_example_answers_through_botfactory_with_metered_model_calls(
    platform: Platform, scripted: dict[str, ScriptedModel]
) -> None:
    model = scripted["small"]
    model.script = [call("word_count", text="the quick brown fox"), "There are 4 words.", "Still 4 words."]
    async with serving(platform) as base:
        port = int(base.rsplit(":", 1)[1])
        bot = example_bot_module().create_bot(BotContext(settings=platform.settings.model_copy(update={"port": port})))
        agent = bot.agent
        assert isinstance(agent, ContractAgent)
        platform.bots.add(bot)
        try:
            async with httpx.AsyncClient(base_url=base, timeout=90, trust_env=False) as http:
                first = await http.post(
                    "/v1/bots/strands/invoke", json={"session_id": "e2e-1", "text": QUESTION, "user_id": "u-1"}
                )
                assert first.status_code == 200, first.text
                assert (first.json()["status"], first.json()["reply"]) == ("completed", "There are 4 words.")
                second = await http.post(
                    "/v1/bots/strands/invoke", json={"session_id": "e2e-1", "text": "And now?", "user_id": "u-1"}
                )
                assert second.json()["reply"] == "Still 4 words."
            pid = agent.process_id
            assert pid is not None
        finally:
            await agent.aclose()

    # The Strands agent made the model calls, through botfactory's inference endpoint, with its tool.
    opening = model.requests[0]
    assert [spec.name for spec in opening.tools] == ["word_count"]
    assert opening.messages[0].role == "system" and "concise assistant" in (opening.messages[0].content or "")
    assert opening.messages[-1].role == "user" and QUESTION in (opening.messages[-1].content or "")
    tool_result = model.requests[1].messages[-1]
    assert (tool_result.role, tool_result.content) == ("tool", "4")
    # The same contract session on the second turn: the app's agent remembered the first one.
    later = [(m.role, m.content) for m in model.requests[2].messages if m.role == "user"]
    assert QUESTION in (later[0][1] or "") and later[-1][1] == "And now?"

    # Every model call was metered against the bot and the botfactory session (3 calls x 15 scripted tokens).
    used = await platform.runtime.queue.usage([("bot", "strands", utc_day(time.time())), ("session", "e2e-1", "")])
    assert [tokens for tokens, _ in used.values()] == [45, 45]

    # The app botfactory started is gone once the bot's agent is closed (the platform does it when it stops).
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
