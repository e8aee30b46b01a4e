"""Console login: a cookie from an API key, redirects without one, CSRF on every form, scoped keys, local mode."""

from __future__ import annotations

import pytest
from console_client import client_for, csrf_of, log_in

from botfactory.console import COOKIE
from botfactory.server import Platform

pytestmark = pytest.mark.integration


async def test_without_a_login_pages_redirect_to_the_login_form(platform: Platform) -> None:
    async with client_for(platform) as client:
        page = await client.get("/console/sessions?bot=support")
        assert page.status_code == 303
        assert page.headers["location"] == "/console/login?next=%2Fconsole%2Fsessions%3Fbot%3Dsupport"
        home = await client.get("/")
        assert (home.status_code, home.headers["location"]) == (303, "/console/sessions")
        form = await client.get("/console/login")
        assert form.status_code == 200 and 'name="credential"' in form.text
        css = await client.get("/console/static/console.css")
        assert css.status_code == 200 and "--accent" in css.text
        # a form posted without a login goes to the login page; the chat's fetch gets a JSON 401
        posted = await client.post("/console/sessions/x/cancel", data={"csrf": "x"})
        assert (posted.status_code, posted.headers["location"]) == (303, "/console/login?next=%2Fconsole%2Fsessions")
        fetched = await client.post("/console/chat/support", data={}, headers={"accept": "application/json"})
        assert fetched.status_code == 401 and fetched.json()["error"]["code"] == "unauthenticated"
        # the API itself still wants a key
        assert (await client.get("/v1/sessions")).status_code == 401


@pytest.mark.parametrize(
    ("credential", "message"),
    [
        ("bf_" + "x" * 43, "unknown API key"),
        ("not-a-key", "the API key is malformed"),
        ("", "paste an API key"),
    ],
)
async def test_a_bad_key_is_refused_on_the_login_page(platform: Platform, credential: str, message: str) -> None:
    async with client_for(platform) as client:
        response = await client.post("/console/login", data={"credential": credential})
        assert response.status_code == 403
        assert message in response.text
        assert COOKIE not in response.cookies


async def test_a_good_key_sets_a_strict_http_only_cookie_and_opens_the_console(platform: Platform) -> None:
    issued = await platform.api_keys.create(bot=None, name="console test")
    async with client_for(platform) as client:
        response = await client.post("/console/login", data={"credential": issued.secret, "next": "/console/approvals"})
        assert (response.status_code, response.headers["location"]) == (303, "/console/approvals")
        cookie = response.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/console" in cookie
        assert issued.secret not in response.headers["set-cookie"]  # the key is never stored in the browser
        page = await client.get("/console/approvals")
        assert page.status_code == 200
        assert f"key:{issued.record.id}" in page.text  # who is signed in
        # a login page for someone already logged in goes on
        assert (await client.get("/console/login")).status_code == 303


async def test_an_offsite_next_parameter_is_ignored(platform: Platform) -> None:
    issued = await platform.api_keys.create(bot=None)
    async with client_for(platform) as client:
        response = await client.post("/console/login", data={"credential": issued.secret, "next": "//evil.example/"})
        assert response.headers["location"] == "/console/sessions"


async def test_a_login_posted_from_another_site_is_refused(platform: Platform) -> None:
    issued = await platform.api_keys.create(bot=None)
    async with client_for(platform) as client:
        response = await client.post(
            "/console/login", data={"credential": issued.secret}, headers={"origin": "https://evil.example"}
        )
        assert response.status_code == 403
        assert COOKIE not in response.cookies


async def test_forms_without_the_csrf_token_are_refused(platform: Platform) -> None:
    issued = await platform.api_keys.create(bot=None)
    await platform.runtime.enqueue("ops", session_id="csrf-1", text="hello")
    async with client_for(platform) as client:
        csrf = await log_in(client, issued.secret)
        missing = await client.post("/console/sessions/csrf-1/cancel", data={})
        assert missing.status_code == 403
        assert "security token is missing or stale" in missing.text
        wrong = await client.post("/console/sessions/csrf-1/cancel", data={"csrf": csrf[:-2] + "xx"})
        assert wrong.status_code == 403
        right = await client.post("/console/sessions/csrf-1/cancel", data={"csrf": csrf})
        assert right.status_code == 303


async def test_a_forged_or_expired_cookie_is_no_login(platform: Platform) -> None:
    issued = await platform.api_keys.create(bot=None)
    async with client_for(platform) as client:
        await log_in(client, issued.secret)
        token = client.cookies[COOKIE]
        payload, _, signature = token.partition(".")
        client.cookies.set(COOKIE, payload + "." + signature[::-1], path="/console")
        assert (await client.get("/console/sessions")).status_code == 303


async def test_logging_out_ends_the_login(platform: Platform) -> None:
    issued = await platform.api_keys.create(bot=None)
    async with client_for(platform) as client:
        csrf = await log_in(client, issued.secret)
        out = await client.post("/console/logout", data={"csrf": csrf})
        assert (out.status_code, out.headers["location"]) == (303, "/console/login")
        assert (await client.get("/console/sessions")).status_code == 303


async def test_revoking_the_key_ends_its_console_logins(platform: Platform) -> None:
    issued = await platform.api_keys.create(bot=None)
    async with client_for(platform) as client:
        await log_in(client, issued.secret)
        await platform.api_keys.revoke(issued.record.id)
        assert (await client.get("/console/sessions")).status_code == 303  # auth_cache_s is 0 in these tests


async def test_a_key_for_one_bot_sees_only_that_bots_sessions(platform: Platform) -> None:
    await platform.runtime.enqueue("ops", session_id="ops-secret", text="restart db")
    await platform.runtime.enqueue("support", session_id="support-visible", text="hi")
    scoped = await platform.api_keys.create(bot="support")
    async with client_for(platform) as client:
        await log_in(client, scoped.secret)
        listing = await client.get("/console/sessions")
        assert "support-visible" in listing.text and "ops-secret" not in listing.text
        hidden = await client.get("/console/sessions/ops-secret")
        assert hidden.status_code == 404 and "no session" in hidden.text
        other = await client.get("/console/sessions?bot=ops")
        assert other.status_code == 403
        bots = await client.get("/console/bots")
        assert 'id="bot-support"' in bots.text and 'id="bot-ops"' not in bots.text


async def test_local_mode_needs_no_login_from_this_machine_only(platform: Platform) -> None:
    await platform.runtime.enqueue("ops", session_id="local-1", text="hello")
    async with client_for(platform, auth="local") as local:
        page = await local.get("/console/sessions")
        assert page.status_code == 200 and "local mode" in page.text
        csrf = csrf_of((await local.get("/console/chat/ops")).text)
        cancelled = await local.post("/console/sessions/local-1/cancel", data={"csrf": csrf})
        assert cancelled.status_code == 303
        offsite = await local.get("/console/sessions", headers={"origin": "https://evil.example"})
        assert offsite.status_code == 303  # a page of another origin gets no local pass
    async with client_for(platform, auth="local", client="10.1.2.3") as remote:
        assert (await remote.get("/console/sessions")).status_code == 303
