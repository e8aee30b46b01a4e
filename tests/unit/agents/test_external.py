"""The contract agent's pure parts: the session id it sends, how a reply is read, and what it accepts."""

from __future__ import annotations

import pytest

from botfactory.agents import Agent, ContractAgent, contract_agents, contract_session_id
from botfactory.agents.external import contract_reply_text


def test_the_contract_session_id_is_stable_valid_and_distinct_per_session() -> None:
    first = contract_session_id("team:C1:1700000000.000100")
    assert first == contract_session_id("team:C1:1700000000.000100")
    assert first != contract_session_id("team:C1:1700000000.000200")
    assert first.startswith("bf-") and 33 <= len(first) <= 256
    assert contract_session_id("x") != "x" and len(contract_session_id("")) == 67


@pytest.mark.parametrize(
    ("answer", "text"),
    [
        ("plain", "plain"),
        ({"result": "from result"}, "from result"),
        ({"response": "from response"}, "from response"),
        ({"result": {"role": "assistant", "content": [{"text": "Strands "}, {"text": "message"}]}}, "Strands message"),
        ({"output": ["a", "b"]}, "ab"),
        ({"something": 1}, '{"something": 1}'),
        (42, "42"),
    ],
)
def test_the_reply_is_found_in_the_shapes_apps_answer_with(answer: object, text: str) -> None:
    assert contract_reply_text(answer) == text


def test_contract_agents_are_found_once_anywhere_in_the_agent_tree() -> None:
    remote = ContractAgent(name="remote", url="http://127.0.0.1:9000")
    router = Agent(name="router", instructions="Route.", tools=[remote])
    assert contract_agents([router, remote, Agent(name="plain", instructions="Hi.")]) == [remote]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"url": "127.0.0.1:9000"}, "must start with http"),
        ({"url": "http://h", "timeout_s": 0}, "timeout_s must be positive"),
        ({"command": []}, "non-empty list"),
        ({"url": "http://h", "tools": [Agent(name="x", instructions="x")]}, "its tools live in the app"),
    ],
)
def test_a_misconfigured_contract_agent_is_refused_when_declared(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ContractAgent(name="remote", **options)  # type: ignore[arg-type]
