"""The alerts page: open alerts first with their rule, kind, subject, severity and message; resolving one;
releasing a quarantined session (from the alerts page, the sessions list and the session page); ending a tool
throttle; CSRF and unknown ids refused; a login for one bot sees only its bot's alerts."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from html import unescape

import httpx
import pytest
from console_client import client_for, csrf_of, log_in, wait_for

from botfactory.server import Platform
from botfactory.store import AlertRecord, AlertStore, NewAlert, ThrottleStore
from botfactory.testing import ScriptedModel

pytestmark = pytest.mark.integration

UNKNOWN_ID = "00000000-0000-0000-0000-000000000000"


class Ticks:
    """A clock that moves one second per reading, so alerts are raised in a known order."""

    def __init__(self) -> None:
        self.now = time.time() - 600.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


async def raise_alert(
    platform: Platform, clock: Ticks, kind: str, subject: str, *, severity: str = "warning", **data: object
) -> AlertRecord:
    rule = {"ttft": "slow-first-token", "spend": "budget", "tool_errors": "flaky-tools", "safety": "safety"}[kind]
    alert, created = await AlertStore(platform.store.engine, clock=clock).raise_alert(
        NewAlert(
            rule=rule,
            kind=kind,
            subject=subject,
            severity=severity,
            message=f"{kind} alert about {subject}",
            data=dict(data),
        )
    )
    assert created
    return alert


async def quarantined_session(platform: Platform, clock: Ticks, session_id: str, bot: str) -> AlertRecord:
    """A session a safety alert quarantined, as the message screen leaves it."""
    await platform.store.ensure_session(session_id, bot=bot, user_id="slack:T1:U9")
    assert await platform.runtime.quarantine_session(session_id)
    return await raise_alert(
        platform, clock, "safety", session_id, severity="critical", bot=bot, source="message_screen"
    )


@pytest.fixture
async def operator(platform: Platform) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """A client logged in with a key for every bot, and its CSRF token."""
    issued = await platform.api_keys.create(bot=None, name="operator")
    async with client_for(platform) as client:
        yield client, await log_in(client, issued.secret)


async def test_the_alerts_page_shows_open_alerts_first_and_filters_resolved_ones(
    platform: Platform, operator: tuple[httpx.AsyncClient, str]
) -> None:
    client, _ = operator
    clock = Ticks()
    empty = await client.get("/console/alerts")
    assert empty.status_code == 200 and "No open alerts" in empty.text
    assert 'href="/console/alerts" class="active"' in empty.text  # in the sidebar, marked as the current page

    old = await raise_alert(platform, clock, "spend", "ops", spent=31.5)
    await AlertStore(platform.store.engine, clock=clock).resolve(old.id)
    slow = await raise_alert(platform, clock, "ttft", "support", value_s=9.2)
    tool = await raise_alert(platform, clock, "tool_errors", "restart_service", error_rate=0.8)
    unsafe = await quarantined_session(platform, clock, "T1:C1:1712.5", "support")

    page = unescape((await client.get("/console/alerts")).text)
    for alert in (slow, tool, unsafe):
        assert f'id="alert-{alert.id}"' in page
        assert alert.message in page and alert.rule in page and alert.kind in page
    assert f'id="alert-{old.id}"' not in page  # resolved: only under the resolved filter
    assert (
        '<span class="pill pill-bad">critical</span>' in page and '<span class="pill pill-warn">warning</span>' in page
    )
    assert 'href="/console/sessions/T1%3AC1%3A1712.5"' in page  # a safety alert links its session
    assert page.count("Release session") == 1 and page.count(">Resolve</button>") == 3
    # newest first
    assert page.index(unsafe.id) < page.index(tool.id) < page.index(slow.id)

    resolved = unescape((await client.get("/console/alerts?status=resolved")).text)
    assert f'id="alert-{old.id}"' in resolved and old.message in resolved and f'id="alert-{slow.id}"' not in resolved
    assert ">Resolve</button>" not in resolved
    every = unescape((await client.get("/console/alerts?status=all")).text)
    assert every.index(slow.id) < every.index(old.id)  # open ones first, though the resolved one is older
    bad = await client.get("/console/alerts?status=closed")
    assert bad.status_code == 400 and "status must be one of open, resolved, all" in bad.text


async def test_resolving_an_alert_from_the_console(platform: Platform, operator: tuple[httpx.AsyncClient, str]) -> None:
    client, csrf = operator
    alert = await raise_alert(platform, Ticks(), "ttft", "support")

    refused = await client.post(f"/console/alerts/{alert.id}/resolve", data={})
    assert refused.status_code == 403 and "security token is missing or stale" in refused.text
    assert (await platform.runtime.alert_store.get(alert.id)).status == "open"

    done = await client.post(
        f"/console/alerts/{alert.id}/resolve", data={"csrf": csrf, "next": "/console/alerts?status=open"}
    )
    assert (done.status_code, done.headers["location"]) == (303, "/console/alerts?status=open")
    assert (await platform.runtime.alert_store.get(alert.id)).status == "resolved"
    assert "No open alerts" in (await client.get("/console/alerts")).text

    again = await client.post(f"/console/alerts/{alert.id}/resolve", data={"csrf": csrf})
    assert again.status_code == 409 and "was resolved already" in again.text
    for unknown in (UNKNOWN_ID, "not-an-id"):
        missing = await client.post(f"/console/alerts/{unknown}/resolve", data={"csrf": csrf})
        assert missing.status_code == 404, unknown
        assert missing.headers["content-type"].startswith("text/html") and "no alert" in missing.text


async def test_a_quarantined_session_shows_its_state_and_is_released_from_the_console(
    platform: Platform, scripted: dict[str, ScriptedModel], operator: tuple[httpx.AsyncClient, str]
) -> None:
    client, csrf = operator
    clock = Ticks()
    first = await quarantined_session(platform, clock, "q-1", "ops")
    second = await quarantined_session(platform, clock, "q-2", "ops")

    listing = unescape((await client.get("/console/sessions")).text)
    assert '<span class="pill pill-bad">quarantined</span>' in listing
    assert 'action="/console/sessions/q-1/release"' in listing and 'action="/console/sessions/q-2/release"' in listing
    assert "/console/sessions/q-1/cancel" not in listing  # nothing runs or waits in it: nothing to cancel
    assert "q-1" in (await client.get("/console/sessions?status=quarantined")).text
    session_page = unescape((await client.get("/console/sessions/q-1")).text)
    assert 'id="quarantined"' in session_page and 'action="/console/sessions/q-1/release"' in session_page
    assert "data-refresh" not in session_page  # nothing runs: the page does not reload itself

    refused = await client.post("/console/sessions/q-1/release", data={"next": "/console/alerts"})
    assert refused.status_code == 403
    released = await client.post("/console/sessions/q-1/release", data={"csrf": csrf, "next": "/console/alerts"})
    assert (released.status_code, released.headers["location"]) == (303, "/console/alerts")
    assert (await platform.store.get_session("q-1")).status == "active"
    assert (await platform.runtime.alert_store.get(first.id)).status == "resolved"  # its safety alert with it
    after = unescape((await client.get("/console/sessions/q-1")).text)
    assert 'id="quarantined"' not in after and "/release" not in after

    # from the session page: back to the session
    back = await client.post("/console/sessions/q-2/release", data={"csrf": csrf})
    assert (back.status_code, back.headers["location"]) == (303, "/console/sessions/q-2")
    assert (await platform.runtime.alert_store.get(second.id)).status == "resolved"
    assert '<span class="pill pill-bad">quarantined</span>' not in (await client.get("/console/sessions")).text

    # released, the session answers again
    scripted["large"].script = ["Back in business."]
    await platform.runtime.enqueue("ops", session_id="q-1", text="hello again")
    assert await wait_for(lambda: _replied(platform, "q-1", "Back in business."))
    missing = await client.post("/console/sessions/nope/release", data={"csrf": csrf})
    assert missing.status_code == 404 and "no session" in missing.text


async def _replied(platform: Platform, session_id: str, text: str) -> bool:
    view = await platform.runtime.session(session_id)
    return any(t.reply == text for t in view.turns)


async def test_ending_a_tool_throttle_from_the_console(
    platform: Platform, operator: tuple[httpx.AsyncClient, str]
) -> None:
    client, csrf = operator
    throttles = ThrottleStore(platform.store.engine)
    assert "No tool is throttled" in (await client.get("/console/alerts")).text
    await throttles.throttle("restart_service", time.time() + 300, "its error rate was 80% (8 of 10 calls failed)")
    await throttles.throttle("search_docs", time.time() - 60, "ended a minute ago")

    page = unescape((await client.get("/console/alerts")).text)
    assert 'id="throttle-restart_service"' in page and "8 of 10 calls failed" in page
    assert 'id="throttle-search_docs"' not in page  # ended already
    assert 'action="/console/alerts/throttles/restart_service/end"' in page

    refused = await client.post("/console/alerts/throttles/restart_service/end", data={})
    assert refused.status_code == 403
    assert "restart_service" in await throttles.active()
    ended = await client.post("/console/alerts/throttles/restart_service/end", data={"csrf": csrf})
    assert (ended.status_code, ended.headers["location"]) == (303, "/console/alerts")
    assert await throttles.active() == {}
    assert "No tool is throttled" in (await client.get("/console/alerts")).text
    gone = await client.post("/console/alerts/throttles/restart_service/end", data={"csrf": csrf})
    assert gone.status_code == 404 and "no throttle on tool" in unescape(gone.text)


async def test_a_login_for_one_bot_sees_only_its_bots_alerts(platform: Platform) -> None:
    clock = Ticks()
    mine = await raise_alert(platform, clock, "ttft", "support")
    my_session = await quarantined_session(platform, clock, "support-q", "support")
    other_bot = await raise_alert(platform, clock, "spend", "ops")
    other_session = await quarantined_session(platform, clock, "ops-q", "ops")
    tool = await raise_alert(platform, clock, "tool_errors", "restart_service")
    await ThrottleStore(platform.store.engine).throttle("restart_service", time.time() + 300, "failing")
    scoped = await platform.api_keys.create(bot="support")

    async with client_for(platform) as client:
        await log_in(client, scoped.secret)
        response = await client.get("/console/alerts?status=all")
        page = unescape(response.text)
        csrf = csrf_of(response.text)
        assert f'id="alert-{mine.id}"' in page and f'id="alert-{my_session.id}"' in page
        for hidden in (other_bot, other_session, tool):
            assert f'id="alert-{hidden.id}"' not in page, hidden.kind
        assert 'id="throttles"' not in page and "log in with a key not limited to one bot" in page

        for alert in (other_bot, other_session, tool):
            refused = await client.post(f"/console/alerts/{alert.id}/resolve", data={"csrf": csrf})
            assert refused.status_code == 404, alert.kind
            assert (await platform.runtime.alert_store.get(alert.id)).status == "open"
        assert (await client.post("/console/sessions/ops-q/release", data={"csrf": csrf})).status_code == 404
        assert (await platform.store.get_session("ops-q")).status == "quarantined"
        throttle = await client.post("/console/alerts/throttles/restart_service/end", data={"csrf": csrf})
        assert throttle.status_code == 403 and "every bot" in throttle.text

        assert (await client.post(f"/console/alerts/{mine.id}/resolve", data={"csrf": csrf})).status_code == 303
        released = await client.post("/console/sessions/support-q/release", data={"csrf": csrf})
        assert released.status_code == 303
        assert (await platform.store.get_session("support-q")).status == "active"
