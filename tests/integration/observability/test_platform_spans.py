"""The platform's own spans and the content opt-in: policy decisions, approval waits, and prompts only on request."""

from __future__ import annotations

import json
from typing import Any

from botfactory.agents import Agent, Engine, TurnInput, tool
from botfactory.gateway import Gateway, GatewayCall, PolicySession, PolicyUser
from botfactory.store import ApprovalRecord, NewApproval
from botfactory.testing import ScriptedModel, call, scripted_inference


@tool
def lookup(login: str) -> str:
    """Look a user up.

    Args:
        login: The login.
    """
    return f"{login} is frank@example.com, key sk-live-0123456789abcdefXYZ"


def _by_name(spans: Any) -> dict[str, Any]:
    return {span.name: span for span in spans.get_finished_spans()}


async def _turn(*, record_content: bool) -> None:
    model = ScriptedModel([call("lookup", login="octocat"), "Found them."], name="small")
    agent = Agent(name="seats", instructions="Answer with the tool.", model="small", tools=[lookup])
    turn = TurnInput(
        session_id="s-content",
        turn_id="t-content",
        text="who is octocat? mail me at me@example.com",
        bot="seats",
        user_id="u1",
        record_content=record_content,
    )
    await Engine(scripted_inference({"small": model})).run_turn(agent, turn)


async def test_without_the_opt_in_no_prompt_completion_or_tool_payload_is_recorded(spans: Any) -> None:
    await _turn(record_content=False)
    recorded = [span.attributes for span in spans.get_finished_spans()]
    content = {
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.tool.call.arguments",
        "gen_ai.tool.call.result",
    }
    assert recorded and all(content.isdisjoint(attributes) for attributes in recorded)
    assert all(attributes["botfactory.user"] == "u1" for attributes in recorded)


async def test_an_opted_in_bot_records_content_with_pii_and_keys_masked(spans: Any) -> None:
    await _turn(record_content=True)
    by_name = _by_name(spans)
    first_chat = next(s for s in spans.get_finished_spans() if s.name == "chat small")
    prompt = json.loads(first_chat.attributes["gen_ai.input.messages"])
    assert prompt[-1] == {"role": "user", "parts": [{"type": "text", "content": "who is octocat? mail me at ***"}]}
    assert json.loads(first_chat.attributes["gen_ai.output.messages"])[0]["parts"][0]["name"] == "lookup"
    executed = by_name["execute_tool lookup"].attributes
    assert json.loads(executed["gen_ai.tool.call.arguments"]) == {"login": "octocat"}
    assert executed["gen_ai.tool.call.result"] == "octocat is ***, key ***"
    assert executed["botfactory.content.recorded"] is True


class DecidedApprovals:
    """An approval store where the request was approved two minutes after it was made."""

    async def request(self, new: NewApproval) -> ApprovalRecord:
        return ApprovalRecord(
            id="ap-1",
            call_key=new.call_key,
            session_id=new.session_id,
            turn_id=new.turn_id,
            bot=new.bot,
            agent_path=new.agent_path,
            tool=new.tool,
            arguments=new.arguments,
            requester=new.requester,
            status="approved",
            decided_by="slack:T1:UADMIN",
            reason=None,
            notice=None,
            created_at=1_700_000_000.0,
            expires_at=1_700_003_600.0,
            decided_at=1_700_000_120.0,
        )

    async def expire(self, approval_id: str) -> ApprovalRecord:
        raise AssertionError("not expired")


async def test_a_resumed_call_records_its_policy_decision_and_the_approval_wait(spans: Any) -> None:
    gateway = Gateway(approvals=DecidedApprovals(), clock=lambda: 1_700_000_130.0)
    restart = _needs_approval()
    result = await gateway.call(
        GatewayCall(
            bot="ops",
            agent_path="ops",
            tool=restart,
            arguments={"service": "checkout"},
            granted={"restart"},
            session=PolicySession(id="s-approval"),
            turn_id="t-approval",
            idempotency_key="t-approval:1",
            user=PolicyUser(id="slack:T1:U1"),
        )
    )
    assert result == "restarted checkout"
    by_name = _by_name(spans)
    policy, wait = by_name["policy decision"], by_name["approval wait"]
    assert policy.attributes["botfactory.policy.decision"] == "allow"
    assert policy.attributes["gen_ai.conversation.id"] == "s-approval"
    assert (wait.end_time - wait.start_time) / 1e9 == 120.0
    assert wait.attributes["botfactory.approval.status"] == "approved"
    assert wait.attributes["botfactory.approval.decided_by"] == "slack:T1:UADMIN"
    assert wait.attributes["botfactory.user"] == "slack:T1:U1"


def _needs_approval() -> Any:
    @tool(needs_approval=True)
    def restart(service: str) -> str:
        """Restart a service.

        Args:
            service: Its name.
        """
        return f"restarted {service}"

    return restart
