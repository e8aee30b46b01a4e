"""A Strands agent served with the bedrock-agentcore SDK, whose model is botfactory's inference endpoint.

It implements the AgentCore runtime contract (``POST /invocations``, ``GET /ping``), so it runs unchanged on an
AgentCore runtime, or hosted by botfactory (``bots/bot.py``), which starts it on ``$PORT`` and sends it every turn of
the ``strands`` bot.

Environment:
    PORT: Where to listen (on 127.0.0.1; default 8080, the contract's port).
    BOTFACTORY_INFERENCE_URL: botfactory's OpenAI-compatible inference root, e.g. http://127.0.0.1:8080/v1/inference.
    BOTFACTORY_API_KEY: An API key (``botfactory keys create --bot strands``), needed under ``botfactory serve``;
        ``botfactory up`` lets this machine in without one.
    BOTFACTORY_BOT: The bot whose budgets the model calls count against (default ``strands``).
    BOTFACTORY_MODEL: The model alias to use (default ``small``).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
from bedrock_agentcore.runtime import BedrockAgentCoreApp, RequestContext
from strands import Agent, tool
from strands.models.openai import OpenAIModel

# Sent by botfactory with each call: the botfactory session, for the inference endpoint's session budgets.
BOTFACTORY_SESSION = "x-amzn-bedrock-agentcore-runtime-custom-botfactory-session-id"
SYSTEM_PROMPT = "You are a concise assistant. Use the word_count tool when asked to count words."

# The OpenAI client insists on a key; botfactory's local mode (``botfactory up``) takes a non-botfactory one as none.
NO_KEY = "local"

app = BedrockAgentCoreApp()
_agents: dict[str, Agent] = {}  # one Strands agent (and so one conversation) per contract session
_http: httpx.AsyncClient | None = None


@tool
def word_count(text: str) -> int:
    """Count the words in a text.

    Args:
        text: The text whose words to count.
    """
    return len(text.split())


def _agent_for(context: RequestContext) -> Agent:
    """The session's agent; its model calls name the bot and the botfactory session, for budgets and metering."""
    global _http
    session = context.session_id or "default"
    if session not in _agents:
        if _http is None:  # created here, on the SDK's worker event loop where every handler runs
            _http = httpx.AsyncClient(timeout=300)
        headers = {"X-Botfactory-Bot": os.environ.get("BOTFACTORY_BOT", "strands")}
        botfactory_session = (context.request_headers or {}).get(BOTFACTORY_SESSION)
        if botfactory_session:
            headers["X-Session-Id"] = botfactory_session
        client = openai.AsyncOpenAI(
            base_url=os.environ["BOTFACTORY_INFERENCE_URL"],
            api_key=os.environ.get("BOTFACTORY_API_KEY") or NO_KEY,
            default_headers=headers,
            http_client=_http,
        )
        model = OpenAIModel(client=client, model_id=os.environ.get("BOTFACTORY_MODEL", "small"))
        _agents[session] = Agent(model=model, tools=[word_count], system_prompt=SYSTEM_PROMPT, callback_handler=None)
    return _agents[session]


@app.entrypoint
async def invoke(payload: dict[str, Any], context: RequestContext) -> AsyncIterator[str]:
    """Answer ``{"prompt": "..."}``, streaming the reply's text as it is generated."""
    prompt = payload.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError('send a payload like {"prompt": "Hello"}')
    async for event in _agent_for(context).stream_async(prompt):
        if isinstance(event.get("data"), str):
            yield event["data"]


if __name__ == "__main__":
    app.run(port=int(os.environ.get("PORT", "8080")), host="127.0.0.1")
