"""Every console page renders real data, and its actions (chat, cancel, approve, retry, discard, kill switches)
work; unknown ids get a 404 page, never a 500."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from html import unescape

import httpx
import pytest
import sqlalchemy as sa
from console_client import client_for, log_in, wait_for

from botfactory.server import Platform, create_app
from botfactory.store import InboxItem
from botfactory.testing import ScriptedModel, call, final, serve_app

pytestmark = pytest.mark.integration

KNOWLEDGE_SCRIPT = [call("knowledge"), final("Run the rotation command.", sources=["docs/vault/rotate-api-keys.md"])]


async def chat(client: httpx.AsyncClient, csrf: str, bot: str, session_id: str, text: str) -> dict[str, str]:
    response = await client.post(
        f"/console/chat/{bot}",
        data={"csrf": csrf, "session_id": session_id, "text": text},
        headers={"accept": "application/json"},
    )
    assert response.status_code == 202, response.text
    return dict(response.json())


async def finished(platform: Platform, session_id: str) -> str:
    async def done() -> str | None:
        view = await platform.runtime.session(session_id)
        ended = [t for t in view.turns if t.status != "running"]
        return ended[-1].status if ended else None

    return str(await wait_for(done))


@pytest.fixture
async def operator(platform: Platform) -> AsyncIterator[tuple[httpx.AsyncClient, str, str]]:
    """A client logged in with a key for every bot: ``(client, csrf token, key id)``."""
    issued = await platform.api_keys.create(bot=None, name="operator")
    async with client_for(platform) as client:
        csrf = await log_in(client, issued.secret)
        yield client, csrf, issued.record.id


async def test_chat_then_the_session_page_shows_the_conversation_and_its_waterfall(
    platform: Platform, scripted: dict[str, ScriptedModel], operator: tuple[httpx.AsyncClient, str, str]
) -> None:
    client, csrf, key_id = operator
    scripted["large"].script = list(KNOWLEDGE_SCRIPT)
    sent = await chat(client, csrf, "support", "web-1", "how do I rotate vault keys?")
    assert sent["events"] == f"/console/sessions/web-1/events?after={sent['after']}"
    assert await finished(platform, "web-1") == "completed"

    page = await client.get("/console/sessions/web-1")
    assert page.status_code == 200
    html = unescape(page.text)
    assert "how do I rotate vault keys?" in html
    assert "Run the rotation command." in html and "Sources: docs/vault/rotate-api-keys.md" in html
    assert f"console:{key_id}" in html  # the message's user is the logged-in key
    # the waterfall: the orchestrator, its sub-agent, the sub-agent's tool call and the model calls with tokens
    for label in ("support/knowledge", "search_docs", "chat large", "10 → 5 tokens"):
        assert label in html, label
    assert 'class="wf-bar"' in html

    listing = unescape((await client.get("/console/sessions?bot=support")).text)
    assert "web-1" in listing
    assert "web-1" not in (await client.get("/console/sessions?status=running")).text
    assert "web-1" in (await client.get(f"/console/sessions?user=console:{key_id}")).text
    assert "web-1" not in (await client.get("/console/sessions?user=someone-else")).text

    again = await client.get("/console/chat/support?session=web-1")
    assert "Run the rotation command." in unescape(again.text)


async def test_a_reply_bubble_holds_no_blank_lines_around_its_text(
    platform: Platform, scripted: dict[str, ScriptedModel], operator: tuple[httpx.AsyncClient, str, str]
) -> None:
    # The bubble keeps the reply's line breaks (white-space: pre-wrap), so whitespace around the text would show
    # as blank space above and below it.
    client, _, _ = operator
    scripted["large"].script = ["\n\nFirst line.\n\nSecond line.\n\n"]
    await platform.runtime.invoke("ops", session_id="bubble-1", text="  hello  \n")
    for path in ("/console/sessions/bubble-1", "/console/chat/ops?session=bubble-1"):
        html = (await client.get(path)).text
        assert '<div class="reply">First line.\n\nSecond line.</div>' in html, path
        assert '<div class="reply">hello</div>' in html, path


async def test_the_chat_form_works_without_javascript(
    platform: Platform, scripted: dict[str, ScriptedModel], operator: tuple[httpx.AsyncClient, str, str]
) -> None:
    client, csrf, _ = operator
    scripted["large"].script = ["Restarted nothing."]
    posted = await client.post("/console/chat/ops", data={"csrf": csrf, "session_id": "plain-1", "text": "hi"})
    assert (posted.status_code, posted.headers["location"]) == (303, "/console/chat/ops?session=plain-1")
    assert await finished(platform, "plain-1") == "completed"
    assert "Restarted nothing." in (await client.get(posted.headers["location"])).text
    refused = await client.post(
        "/console/chat/ops",
        data={"csrf": csrf, "session_id": "plain-2", "text": "   "},
        headers={"accept": "application/json"},
    )
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_input"


async def test_the_events_stream_follows_the_turn_live(platform: Platform, scripted: dict[str, ScriptedModel]) -> None:
    scripted["large"].script = list(KNOWLEDGE_SCRIPT)
    issued = await platform.api_keys.create(bot=None)
    async with serve_app(create_app(platform, auth="keys")) as base_url, httpx.AsyncClient(base_url=base_url) as client:
        csrf = await log_in(client, issued.secret)
        sent = await chat(client, csrf, "support", "live-1", "rotate vault keys")
        seen: list[dict[str, object]] = []
        async with client.stream("GET", sent["events"], headers={"accept": "text/event-stream"}) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            async for line in stream.aiter_lines():
                if line.startswith("data: "):
                    seen.append(json.loads(line.removeprefix("data: ")))
                    if seen[-1]["type"] == "turn_finished":
                        break
    types = [e["type"] for e in seen]
    assert types[0] == "turn_started" and types[-1] == "turn_finished"
    assert {"model_call_finished", "tool_call_started", "agent_finished"} <= set(types)
    assert any(e.get("agent_path") == "support/knowledge" for e in seen)
    assert seen[-1]["reply"] == "Run the rotation command.\n\nSources: docs/vault/rotate-api-keys.md"


async def test_approve_from_the_console_resumes_the_turn(
    platform: Platform, scripted: dict[str, ScriptedModel], operator: tuple[httpx.AsyncClient, str, str]
) -> None:
    client, csrf, key_id = operator
    scripted["large"].script = [call("restart_service", service="checkout"), "Restarted checkout."]
    await platform.runtime.enqueue("ops", session_id="ap-1", text="restart checkout", user_id="slack:T1:U1")
    pending = await wait_for(lambda: platform.runtime.approvals(status="pending"))

    page = unescape((await client.get("/console/approvals")).text)
    assert "restart_service" in page and '"service": "checkout"' in page and "slack:T1:U1" in page
    bad = await client.post(f"/console/approvals/{pending[0].id}", data={"csrf": csrf, "decision": "maybe"})
    assert bad.status_code == 400
    decided = await client.post(
        f"/console/approvals/{pending[0].id}", data={"csrf": csrf, "decision": "approve", "reason": "go ahead"}
    )
    assert (decided.status_code, decided.headers["location"]) == (303, "/console/approvals")
    assert await finished(platform, "ap-1") == "completed"
    record = await platform.runtime.approval(pending[0].id)
    assert (record.status, record.decided_by, record.reason) == ("approved", f"key:{key_id}", "go ahead")
    again = await client.post(f"/console/approvals/{pending[0].id}", data={"csrf": csrf, "decision": "deny"})
    assert again.status_code == 409  # decided already: a page saying so, not a crash
    after = unescape((await client.get("/console/approvals")).text)
    assert "Nothing waits for a decision" in after and "go ahead" in after
    assert "Restarted checkout." in unescape((await client.get("/console/sessions/ap-1")).text)


async def test_nobody_approves_their_own_request_in_the_console(
    platform: Platform, scripted: dict[str, ScriptedModel], operator: tuple[httpx.AsyncClient, str, str]
) -> None:
    client, csrf, key_id = operator
    scripted["large"].script = [call("restart_service", service="db"), "ok"]
    await platform.runtime.enqueue("ops", session_id="ap-2", text="restart db", user_id=f"key:{key_id}")
    pending = await wait_for(lambda: platform.runtime.approvals(status="pending"))
    refused = await client.post(f"/console/approvals/{pending[0].id}", data={"csrf": csrf, "decision": "approve"})
    assert refused.status_code == 403 and "nobody approves their own request" in refused.text
    assert (await platform.runtime.approval(pending[0].id)).status == "pending"


async def test_cancel_from_the_sessions_list_ends_a_waiting_turn(
    platform: Platform, scripted: dict[str, ScriptedModel], operator: tuple[httpx.AsyncClient, str, str]
) -> None:
    client, csrf, _ = operator
    scripted["large"].script = [call("restart_service", service="cache"), "never"]
    await platform.runtime.enqueue("ops", session_id="cx-1", text="restart cache", user_id="u1")
    await wait_for(lambda: platform.runtime.approvals(status="pending"))
    listing = await client.get("/console/sessions")
    assert 'action="/console/sessions/cx-1/cancel"' in listing.text
    response = await client.post("/console/sessions/cx-1/cancel", data={"csrf": csrf, "next": "/console/sessions"})
    assert (response.status_code, response.headers["location"]) == (303, "/console/sessions")
    assert await finished(platform, "cx-1") == "cancelled"
    assert "cancelled" in (await client.get("/console/sessions/cx-1")).text


async def test_dead_letters_can_be_retried_and_discarded(
    platform: Platform, scripted: dict[str, ScriptedModel], operator: tuple[httpx.AsyncClient, str, str]
) -> None:
    client, csrf, _ = operator
    # an empty script fails every model call: with max_attempts = 1 the message goes to the dead letters at once
    await platform.runtime.enqueue("ops", session_id="dl-1", text="first")
    await platform.runtime.enqueue("ops", session_id="dl-2", text="second")

    async def both_dead() -> list[InboxItem] | None:
        found = await platform.runtime.dead_letters()
        return found if len(found) == 2 else None

    dead = await wait_for(both_dead)
    page = unescape((await client.get("/console/dead-letters")).text)
    assert "dl-1" in page and "dl-2" in page and "ran out of answers" in page
    by_session = {d.session_id: d.message_id for d in dead}

    scripted["large"].script = ["second time lucky"]
    retried = await client.post(f"/console/dead-letters/{by_session['dl-1']}/retry", data={"csrf": csrf})
    assert retried.status_code == 303
    assert await wait_for(lambda: _replied(platform, "dl-1", "second time lucky"))
    discarded = await client.post(f"/console/dead-letters/{by_session['dl-2']}/discard", data={"csrf": csrf})
    assert discarded.status_code == 303
    assert await platform.runtime.dead_letters() == []
    assert "No dead letters" in (await client.get("/console/dead-letters")).text
    gone = await client.post(f"/console/dead-letters/{by_session['dl-2']}/discard", data={"csrf": csrf})
    assert gone.status_code == 404


async def _replied(platform: Platform, session_id: str, text: str) -> bool:
    view = await platform.runtime.session(session_id)
    return any(t.reply == text for t in view.turns)


async def test_the_bots_page_shows_agents_models_tools_and_switches_them(
    platform: Platform, operator: tuple[httpx.AsyncClient, str, str]
) -> None:
    client, csrf, _ = operator
    page = unescape((await client.get("/console/bots")).text)
    for text in ("support/knowledge", "support/github", "search_docs", "assign_copilot_seats", "restart_service"):
        assert text in page, text
    assert "needs approval" in page and "<code>large</code>" in page
    off = await client.post("/console/bots/kill-switch", data={"csrf": csrf, "kind": "bot", "name": "ops", "on": "1"})
    assert off.status_code == 303
    assert ("bot", "ops") in await platform.runtime.kill_switches()
    assert "stopped" in (await client.get("/console/bots")).text
    back = await client.post("/console/bots/kill-switch", data={"csrf": csrf, "kind": "bot", "name": "ops", "on": "0"})
    assert back.status_code == 303 and ("bot", "ops") not in await platform.runtime.kill_switches()
    bad = await client.post("/console/bots/kill-switch", data={"csrf": csrf, "kind": "planet", "name": "x", "on": "1"})
    assert bad.status_code == 400


async def test_the_costs_page_charts_tokens_by_bot_model_and_user(
    platform: Platform, scripted: dict[str, ScriptedModel], operator: tuple[httpx.AsyncClient, str, str]
) -> None:
    client, csrf, key_id = operator
    empty = await client.get("/console/costs")
    assert empty.status_code == 200 and "Nothing was counted in this period." in empty.text
    scripted["large"].script = list(KNOWLEDGE_SCRIPT)
    await chat(client, csrf, "support", "cost-1", "rotate vault keys")
    assert await finished(platform, "cost-1") == "completed"
    page = unescape((await client.get("/console/costs?days=7")).text)
    assert page.count('<svg class="chart"') == 3
    assert "<rect" in page and f"console:{key_id}" in page
    # two model calls of 10 + 5 tokens each, on the large alias
    assert '<td class="mono">support</td><td class="num">30</td>' in page
    assert (await client.get("/console/costs?days=1000")).status_code == 400


async def test_unknown_things_get_a_404_page(platform: Platform, operator: tuple[httpx.AsyncClient, str, str]) -> None:
    client, csrf, _ = operator
    for path, text in [
        ("/console/sessions/nope", "no session &#39;nope&#39;"),
        ("/console/nowhere", "the console has no page"),
        ("/console/chat/nobot", "nobot"),
    ]:
        response = await client.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"].startswith("text/html")
        assert text in response.text, path
    missing = await client.post(
        "/console/approvals/00000000-0000-0000-0000-000000000000", data={"csrf": csrf, "decision": "approve"}
    )
    assert missing.status_code == 404
    assert (await client.post("/console/sessions/nope/cancel", data={"csrf": csrf})).status_code == 404
    assert (await client.get("/console/sessions/x?turns=0")).status_code == 400


async def test_a_session_page_reads_each_table_once_however_many_turns(
    platform: Platform, scripted: dict[str, ScriptedModel], operator: tuple[httpx.AsyncClient, str, str]
) -> None:
    client, _, _ = operator
    scripted["large"].script = ["ok"] * 12
    for session_id, turns in (("few", 2), ("many", 10)):
        for n in range(turns):
            await platform.runtime.invoke("ops", session_id=session_id, text=f"message {n}")
    counts = {}
    for session_id in ("few", "many"):
        statements: list[str] = []

        def count(conn: object, cursor: object, statement: str, *args: object) -> None:
            statements.append(statement)  # noqa: B023 - read right after the request below

        sa.event.listen(platform.store.engine.sync_engine, "before_cursor_execute", count)
        try:
            page = await client.get(f"/console/sessions/{session_id}")
        finally:
            sa.event.remove(platform.store.engine.sync_engine, "before_cursor_execute", count)
        assert page.status_code == 200
        # Reads only: the span sink and the audit log write in the background meanwhile.
        reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
        counts[session_id] = len([s for s in reads if "steps" in s or "spans" in s or "audit_log" in s])
    assert counts["few"] == counts["many"] == 3
