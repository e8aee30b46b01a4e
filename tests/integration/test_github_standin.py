"""The GitHub stand-in on a real uvicorn server on 127.0.0.1, driven by the real client."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from botfactory.bots.support.github import GitHubCopilotClient, GitHubError
from botfactory.testing.github import GitHubStandIn, run_standin_server

pytestmark = pytest.mark.integration

TOKEN = "demo-token"


@pytest.fixture
def standin() -> GitHubStandIn:
    return GitHubStandIn(org="example-org", token=TOKEN)


@pytest.fixture
def base_url(standin: GitHubStandIn) -> Iterator[str]:
    with run_standin_server(standin) as url:
        yield url


async def test_client_assigns_seats_over_real_http(standin: GitHubStandIn, base_url: str) -> None:
    assert base_url.startswith("http://127.0.0.1:")
    async with GitHubCopilotClient(base_url, "example-org", TOKEN) as client:
        assert await client.is_member("octocat") is True
        assert await client.is_member("hubot") is False
        assert await client.assign_seats(["octocat", "mona"], idempotency_key="t-1") == 2
        assert await client.assign_seats(["octocat", "mona"], idempotency_key="t-1") == 2
        assert await client.assign_seats(["mona", "hubot"]) == 1
        with pytest.raises(GitHubError, match="user ghost cannot be assigned"):
            await client.assign_seats(["ghost"])

    assert standin.seats == {"octocat", "mona", "hubot"}
    assert [c.seats_created for c in standin.calls] == [2, 1]

    async with httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        seats = (await http.get("/orgs/example-org/copilot/billing/seats")).json()
        page2 = (await http.get("/orgs/example-org/copilot/billing/seats", params={"per_page": 2, "page": 2})).json()
        calls = (await http.get("/_standin/calls")).json()

    assert seats["total_seats"] == 3
    assert [s["assignee"]["login"] for s in seats["seats"]] == ["mona", "octocat", "hubot"]
    assert [s["assignee"]["login"] for s in page2["seats"]] == ["hubot"]
    assert [c["idempotency_key"] for c in calls["calls"]] == ["t-1", None]
    assert calls["seats"] == ["hubot", "mona", "octocat"]


async def test_standin_answers_github_style_errors(standin: GitHubStandIn, base_url: str) -> None:
    path = "/orgs/example-org/copilot/billing/selected_users"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=base_url) as http:
        no_auth = await http.post(path, json={"selected_usernames": ["octocat"]})
        wrong_org = await http.post("/orgs/other/copilot/billing/selected_users", json={}, headers=auth)
        bad_json = await http.post(path, content=b"{not json", headers=auth)
        missing = await http.post(path, json={"users": ["octocat"]}, headers=auth)
        first = await http.post(path, json={"selected_usernames": ["mona"]}, headers={**auth, "Idempotency-Key": "k"})
        reused = await http.post(path, json={"selected_usernames": ["hubot"]}, headers={**auth, "Idempotency-Key": "k"})

    assert (no_auth.status_code, no_auth.json()["message"]) == (401, "Bad credentials")
    assert wrong_org.status_code == 404
    assert (bad_json.status_code, bad_json.json()["message"]) == (400, "Problems parsing JSON")
    assert missing.status_code == 422
    assert "documentation_url" in missing.json()
    assert (first.status_code, first.json()) == (201, {"seats_created": 1})
    assert reused.status_code == 422
    assert standin.seats == {"mona"}
    assert len(standin.calls) == 1
