"""GitHubCopilotClient against the in-process GitHub stand-in and scripted transports."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from botfactory.bots.support.github import GitHubCopilotClient, GitHubError, validate_github_username
from botfactory.errors import ToolArgumentsError, ToolError
from botfactory.testing.github import GitHubStandIn

TOKEN = "ghp_s3cr3t-test-token-value"
BASE = "https://api.github.test"


class Sleeps:
    """Records requested backoff delays instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.fixture
def standin() -> GitHubStandIn:
    return GitHubStandIn(org="acme", token=TOKEN, members=("octocat", "mona"), users=("hubot",))


@pytest.fixture
async def client(standin: GitHubStandIn) -> AsyncIterator[GitHubCopilotClient]:
    async with GitHubCopilotClient(BASE, "acme", TOKEN, transport=httpx.ASGITransport(app=standin.app)) as c:
        yield c


def scripted(responses: list[httpx.Response], seen: list[httpx.Request]) -> httpx.MockTransport:
    """A transport answering with ``responses`` in order and recording each request."""

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return responses[len(seen) - 1]

    return httpx.MockTransport(handler)


async def test_assign_seats_creates_seats_and_records_the_call(
    client: GitHubCopilotClient, standin: GitHubStandIn
) -> None:
    created = await client.assign_seats(["octocat", "hubot"], idempotency_key="req-1")

    assert created == 2
    assert standin.seats == {"octocat", "hubot"}
    assert [(c.usernames, c.idempotency_key) for c in standin.calls] == [(("octocat", "hubot"), "req-1")]


async def test_same_idempotency_key_twice_applies_once(client: GitHubCopilotClient, standin: GitHubStandIn) -> None:
    first = await client.assign_seats(["mona"], idempotency_key="thread-42")
    second = await client.assign_seats(["mona"], idempotency_key="thread-42")

    assert first == second == 1
    assert len(standin.calls) == 1


async def test_user_already_holding_a_seat_is_not_counted(client: GitHubCopilotClient, standin: GitHubStandIn) -> None:
    await client.assign_seats(["octocat"])

    assert await client.assign_seats(["OctoCat", "mona"]) == 1
    assert standin.seats == {"octocat", "mona"}
    assert len(standin.calls) == 2


async def test_duplicate_usernames_are_sent_once() -> None:
    seen: list[httpx.Request] = []
    transport = scripted([httpx.Response(201, json={"seats_created": 1})], seen)
    async with GitHubCopilotClient(BASE, "acme", TOKEN, transport=transport) as c:
        await c.assign_seats(["@mona", "Mona ", "mona"])

    assert json.loads(seen[0].content) == {"selected_usernames": ["mona"]}


async def test_request_has_github_rest_shape() -> None:
    seen: list[httpx.Request] = []
    transport = scripted([httpx.Response(201, json={"seats_created": 2})], seen)
    async with GitHubCopilotClient(BASE + "/", "acme", TOKEN, transport=transport) as c:
        await c.assign_seats(["octocat", "mona"], idempotency_key="k-1")

    (request,) = seen
    assert request.method == "POST"
    assert str(request.url) == f"{BASE}/orgs/acme/copilot/billing/selected_users"
    assert request.headers["Accept"] == "application/vnd.github+json"
    assert request.headers["X-GitHub-Api-Version"] == "2022-11-28"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Idempotency-Key"] == "k-1"
    assert json.loads(request.content) == {"selected_usernames": ["octocat", "mona"]}


async def test_no_idempotency_header_when_no_key_given() -> None:
    seen: list[httpx.Request] = []
    transport = scripted([httpx.Response(201, json={"seats_created": 1})], seen)
    async with GitHubCopilotClient(BASE, "acme", TOKEN, transport=transport) as c:
        await c.assign_seats(["mona"])

    assert "Idempotency-Key" not in seen[0].headers


async def test_bad_token_names_the_setting_and_not_the_token(standin: GitHubStandIn) -> None:
    wrong = "ghp_wrong-token-123456"
    transport = httpx.ASGITransport(app=standin.app)
    async with GitHubCopilotClient(BASE, "acme", wrong, transport=transport) as c:
        with pytest.raises(GitHubError) as excinfo:
            await c.assign_seats(["octocat"])

    assert excinfo.value.status_code == 401
    assert "GitHub rejected the token" in str(excinfo.value)
    assert "BOTFACTORY_GITHUB_TOKEN" in str(excinfo.value)
    assert wrong not in str(excinfo.value)
    assert not excinfo.value.retryable
    assert standin.calls == []
    assert standin.seats == set()


async def test_unknown_user_is_named_with_githubs_reason(client: GitHubCopilotClient, standin: GitHubStandIn) -> None:
    with pytest.raises(GitHubError) as excinfo:
        await client.assign_seats(["octocat", "ghost-user"])

    message = str(excinfo.value)
    assert excinfo.value.status_code == 422
    assert message.startswith("user ghost-user cannot be assigned")
    assert "does not exist" in message
    assert standin.seats == set()


async def test_unknown_org_is_reported(standin: GitHubStandIn) -> None:
    transport = httpx.ASGITransport(app=standin.app)
    async with GitHubCopilotClient(BASE, "no-such-org", TOKEN, transport=transport) as c:
        with pytest.raises(GitHubError, match="organization 'no-such-org' was not found"):
            await c.assign_seats(["octocat"])


@pytest.mark.parametrize("name", ["", "-lead", "trail-", "dou--ble", "x" * 40, "has space", "dot.name", "ünï", "a_b"])
async def test_invalid_username_is_rejected_before_any_request(name: str) -> None:
    seen: list[httpx.Request] = []
    transport = scripted([], seen)
    async with GitHubCopilotClient(BASE, "acme", TOKEN, transport=transport) as c:
        with pytest.raises(ToolArgumentsError):
            await c.assign_seats(["octocat", name])
        with pytest.raises(ToolArgumentsError):
            await c.is_member(name)

    assert seen == []


@pytest.mark.parametrize("name", ["a", "a-b-c", "x" * 39, "Octo-Cat42", "0day"])
def test_valid_usernames_pass(name: str) -> None:
    assert validate_github_username(name) == name


async def test_empty_list_is_rejected() -> None:
    async with GitHubCopilotClient(BASE, "acme", TOKEN, transport=scripted([], [])) as c:
        with pytest.raises(ToolArgumentsError, match="No GitHub usernames"):
            await c.assign_seats([])


async def test_retries_503_then_succeeds_with_the_same_key() -> None:
    seen: list[httpx.Request] = []
    sleeps = Sleeps()
    transport = scripted(
        [httpx.Response(503), httpx.Response(503), httpx.Response(201, json={"seats_created": 1})], seen
    )
    async with GitHubCopilotClient(BASE, "acme", TOKEN, transport=transport, sleep=sleeps) as c:
        created = await c.assign_seats(["mona"], idempotency_key="k-9")

    assert created == 1
    assert len(seen) == 3
    assert {r.headers["Idempotency-Key"] for r in seen} == {"k-9"}
    assert sleeps.delays == [0.5, 1.0]


async def test_persistent_5xx_raises_retryable_error() -> None:
    seen: list[httpx.Request] = []
    sleeps = Sleeps()
    transport = scripted([httpx.Response(502)] * 3, seen)
    async with GitHubCopilotClient(BASE, "acme", TOKEN, transport=transport, sleep=sleeps) as c:
        with pytest.raises(GitHubError) as excinfo:
            await c.assign_seats(["mona"])

    assert excinfo.value.retryable
    assert "after 3 attempts" in str(excinfo.value)
    assert len(seen) == 3


async def test_rate_limit_honours_retry_after() -> None:
    seen: list[httpx.Request] = []
    sleeps = Sleeps()
    transport = scripted(
        [
            httpx.Response(429, headers={"Retry-After": "7"}),
            httpx.Response(403, headers={"x-ratelimit-remaining": "0"}, json={"message": "API rate limit exceeded"}),
            httpx.Response(204),
        ],
        seen,
    )
    async with GitHubCopilotClient(BASE, "acme", TOKEN, transport=transport, sleep=sleeps) as c:
        assert await c.is_member("mona") is True

    assert sleeps.delays == [7.0, 1.0]


async def test_network_failure_is_retried_then_reported() -> None:
    attempts = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal attempts
        attempts += 1
        raise httpx.ConnectError("connection refused", request=request)

    sleeps = Sleeps()
    async with GitHubCopilotClient(BASE, "acme", TOKEN, transport=httpx.MockTransport(handler), sleep=sleeps) as c:
        with pytest.raises(GitHubError, match="Could not reach GitHub") as excinfo:
            await c.assign_seats(["mona"])

    assert attempts == 3
    assert excinfo.value.retryable
    assert excinfo.value.status_code is None


async def test_missing_token_says_what_to_set() -> None:
    seen: list[httpx.Request] = []
    async with GitHubCopilotClient(BASE, "acme", None, transport=scripted([], seen)) as c:
        with pytest.raises(ToolError, match="Set BOTFACTORY_GITHUB_TOKEN"):
            await c.assign_seats(["mona"])
        with pytest.raises(ToolError, match="Set BOTFACTORY_GITHUB_TOKEN"):
            await c.is_member("mona")

    assert seen == []


async def test_is_member(client: GitHubCopilotClient) -> None:
    assert await client.is_member("octocat") is True
    assert await client.is_member("hubot") is False
    assert await client.is_member("nobody-at-all") is False


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(401, json={"message": f"Bad credentials for {TOKEN}"}),
        httpx.Response(403, json={"message": "Resource not accessible by personal access token"}),
        httpx.Response(404, json={"message": "Not Found"}),
        httpx.Response(422, json={"message": f"token {TOKEN} lacks seat management", "errors": []}),
        httpx.Response(400, text=f"garbage {TOKEN}"),
        httpx.Response(418, json={"message": TOKEN}),
        httpx.Response(503, json={"message": TOKEN}),
    ],
)
async def test_token_never_appears_in_errors(response: httpx.Response) -> None:
    transport = httpx.MockTransport(lambda request: response)
    async with GitHubCopilotClient(BASE, "acme", TOKEN, transport=transport, sleep=Sleeps()) as c:
        with pytest.raises(ToolError) as excinfo:
            await c.assign_seats(["mona"])
        assert TOKEN not in repr(c)

    error = excinfo.value
    assert TOKEN not in str(error)
    assert TOKEN not in json.dumps(error.to_dict())
    assert error.__cause__ is None or TOKEN not in str(error.__cause__)
