"""A small GitHub REST client for the support bot: Copilot seat assignment and org membership.

Only the two calls the bot needs are implemented, in the exact shape of the public GitHub REST API, so the same
client talks to ``https://api.github.com`` (or a GitHub Enterprise ``/api/v3`` base URL) and to the local stand-in in
:mod:`botfactory.testing.github`. Every failure is mapped to a :class:`~botfactory.errors.ToolError` whose message the
model can read and act on; messages never contain the token.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, Final

import httpx

from botfactory.errors import ToolArgumentsError, ToolError

__all__ = ["GITHUB_API_VERSION", "GitHubCopilotClient", "GitHubError", "validate_github_username"]

logger = logging.getLogger(__name__)

GITHUB_API_VERSION: Final = "2022-11-28"
TOKEN_ENV_VAR: Final = "BOTFACTORY_GITHUB_TOKEN"

_USERNAME_RE: Final = re.compile(r"^[A-Za-z0-9](?:-?[A-Za-z0-9])*$")
_MAX_USERNAME_LEN: Final = 39
_RETRY_STATUSES: Final = frozenset({429, 500, 502, 503, 504})
_MAX_RETRY_AFTER_S: Final = 30.0
_MAX_DETAIL_CHARS: Final = 300

Sleep = Callable[[float], Awaitable[None]]


class GitHubError(ToolError):
    """GitHub answered a request with an error, or could not be reached.

    Attributes:
        status_code: The HTTP status GitHub answered with, or ``None`` when no answer arrived.
    """

    code = "github_error"
    http_status = 502

    def __init__(self, message: str, *, status_code: int | None = None, retryable: bool | None = None) -> None:
        super().__init__(message, retryable=retryable)
        self.status_code = status_code


def validate_github_username(username: str) -> str:
    """Check a login against GitHub's rules before any request is made.

    GitHub logins are 1-39 characters of ASCII letters, digits and single hyphens, and cannot start or end with a
    hyphen.

    Args:
        username: The login to check; surrounding whitespace and a leading ``@`` are removed.

    Returns:
        The cleaned login.

    Raises:
        ToolArgumentsError: If the login cannot be a GitHub username.
    """
    cleaned = username.strip().removeprefix("@")
    shown = cleaned if len(cleaned) <= 60 else cleaned[:57] + "..."
    if not cleaned:
        raise ToolArgumentsError("A GitHub username is empty; ask the user for their GitHub login.")
    if len(cleaned) > _MAX_USERNAME_LEN:
        raise ToolArgumentsError(
            f"'{shown}' is not a valid GitHub username: logins are at most {_MAX_USERNAME_LEN} characters."
        )
    if not _USERNAME_RE.fullmatch(cleaned):
        raise ToolArgumentsError(
            f"'{shown}' is not a valid GitHub username: use only letters, digits and single hyphens, "
            "not starting or ending with a hyphen."
        )
    return cleaned


class GitHubCopilotClient:
    """Assigns GitHub Copilot seats and checks organization membership through the GitHub REST API.

    Use one client per organization and close it with :meth:`aclose` (or ``async with``). Rate limits (429, or 403
    with an exhausted rate limit), 5xx answers and network failures are retried ``max_retries`` times with
    exponential backoff before a retryable :class:`GitHubError` is raised.

    Args:
        base_url: API root, e.g. ``https://api.github.com`` or the stand-in's URL.
        org: The organization whose Copilot seats are managed.
        token: A token allowed to manage Copilot billing (``manage_billing:copilot`` or ``admin:org``). ``None`` is
            accepted so a bot can start without one; every call then fails with a message saying what to set.
        timeout_s: Per-request timeout in seconds.
        transport: Optional httpx transport, e.g. ``httpx.ASGITransport`` for in-process tests.
        max_retries: Extra attempts after a retryable failure.
        backoff_s: Delay before the first retry; doubled for each further retry.
        sleep: Awaitable sleep, injectable so tests do not wait.
    """

    def __init__(
        self,
        base_url: str,
        org: str,
        token: str | None,
        *,
        timeout_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        max_retries: int = 2,
        backoff_s: float = 0.5,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if not org or "/" in org:
            raise ValueError(f"invalid GitHub organization name: {org!r}")
        self.base_url = base_url.rstrip("/")
        self.org = org
        self._token = token or None
        self._max_retries = max(0, max_retries)
        self._backoff_s = backoff_s
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=timeout_s,
            transport=transport,
            headers={"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": GITHUB_API_VERSION},
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return (
            f"GitHubCopilotClient(base_url={self.base_url!r}, org={self.org!r}, token={'***' if self._token else None})"
        )

    async def __aenter__(self) -> GitHubCopilotClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the underlying HTTP connections."""
        await self._http.aclose()

    async def assign_seats(self, usernames: Sequence[str], *, idempotency_key: str | None = None) -> int:
        """Give each user a Copilot seat in the organization.

        Users who already hold a seat are left as they are. Usernames are validated before any request is sent.

        Args:
            usernames: GitHub logins to assign; duplicates (case-insensitive) are sent once.
            idempotency_key: Sent as ``Idempotency-Key`` so a repeated request is not applied twice.

        Returns:
            The number of seats newly created, as reported by GitHub.

        Raises:
            ToolArgumentsError: If the list is empty or a login is invalid.
            ToolError: If no token is configured.
            GitHubError: If GitHub refuses or cannot be reached.
        """
        if isinstance(usernames, str):
            usernames = [usernames]
        logins: list[str] = []
        seen: set[str] = set()
        for name in usernames:
            login = validate_github_username(name)
            if login.lower() not in seen:
                seen.add(login.lower())
                logins.append(login)
        if not logins:
            raise ToolArgumentsError("No GitHub usernames were given; ask the user for their GitHub login.")
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        response = await self._request(
            "POST",
            f"/orgs/{self.org}/copilot/billing/selected_users",
            json={"selected_usernames": logins},
            headers=headers,
        )
        if response.status_code in (200, 201):
            body = _json(response)
            created = body.get("seats_created") if isinstance(body, dict) else None
            if isinstance(created, int) and not isinstance(created, bool):
                logger.info(
                    "org=<%s>, users=<%d>, seats_created=<%d> | copilot seats assigned", self.org, len(logins), created
                )
                return created
            raise GitHubError(
                "GitHub accepted the seat assignment but its answer had no 'seats_created' count; "
                "check the seats in GitHub before retrying.",
                status_code=response.status_code,
            )
        raise self._error(response, logins)

    async def is_member(self, username: str) -> bool:
        """Tell whether a user is a member of the organization.

        Args:
            username: The GitHub login to look up.

        Returns:
            ``True`` if GitHub answers 204, ``False`` if it answers 404.

        Raises:
            ToolArgumentsError: If the login is invalid.
            ToolError: If no token is configured.
            GitHubError: If GitHub refuses or cannot be reached.
        """
        login = validate_github_username(username)
        response = await self._request("GET", f"/orgs/{self.org}/members/{login}")
        if response.status_code == 204:
            return True
        if response.status_code == 404:
            return False
        if response.status_code == 302:
            raise GitHubError(
                f"GitHub hides the member list of '{self.org}' from this token; the token's account must be a "
                f"member of the organization. Fix BOTFACTORY_GITHUB_TOKEN.",
                status_code=302,
            )
        raise self._error(response, [login])

    async def _request(
        self, method: str, path: str, *, json: Any = None, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        if self._token is None:
            raise ToolError(
                f"No GitHub token is configured, so GitHub cannot be called. Set {TOKEN_ENV_VAR} to a token that "
                "may manage Copilot seats for the organization."
            )
        all_headers = {"Authorization": f"Bearer {self._token}", **(headers or {})}
        attempt = 0
        while True:
            try:
                response = await self._http.request(method, path, json=json, headers=all_headers)
            except httpx.TransportError as exc:
                if attempt >= self._max_retries:
                    raise GitHubError(
                        f"Could not reach GitHub at {self.base_url} ({type(exc).__name__}) after {attempt + 1} "
                        "attempts; try again in a few minutes.",
                        retryable=True,
                    ) from None
                delay = self._backoff_s * 2**attempt
                logger.debug(
                    "org=<%s>, attempt=<%d>, error=<%s>, delay_s=<%.2f> | github unreachable, retrying",
                    self.org,
                    attempt + 1,
                    type(exc).__name__,
                    delay,
                )
            else:
                if not _is_rate_limited_or_unavailable(response):
                    return response
                if attempt >= self._max_retries:
                    raise GitHubError(
                        f"GitHub is rate limiting or unavailable (HTTP {response.status_code}) after {attempt + 1} "
                        "attempts; try again in a few minutes.",
                        status_code=response.status_code,
                        retryable=True,
                    )
                delay = _retry_after(response) or self._backoff_s * 2**attempt
                logger.debug(
                    "org=<%s>, attempt=<%d>, status=<%d>, delay_s=<%.2f> | github busy, retrying",
                    self.org,
                    attempt + 1,
                    response.status_code,
                    delay,
                )
            attempt += 1
            await self._sleep(delay)

    def _error(self, response: httpx.Response, logins: Sequence[str]) -> GitHubError:
        status = response.status_code
        detail = self._detail(response)
        logger.debug("org=<%s>, status=<%d> | github request failed", self.org, status)
        if status in (401, 403):
            message = (
                f"GitHub rejected the token (HTTP {status}: {detail}); check {TOKEN_ENV_VAR}: it must be valid and "
                f"allowed to manage Copilot seats in '{self.org}'."
            )
        elif status == 404:
            message = (
                f"GitHub organization '{self.org}' was not found, or the token cannot see it (HTTP 404); "
                "check the organization name and the token's access."
            )
        elif status == 422:
            named = _named_users(response, logins) or list(logins)
            who = ", ".join(named)
            message = f"user {who} cannot be assigned a Copilot seat: {detail}"
        elif status == 400:
            message = f"GitHub could not parse the request (HTTP 400: {detail})."
        else:
            message = f"GitHub answered HTTP {status}: {detail}"
        return GitHubError(message, status_code=status, retryable=False)

    def _detail(self, response: httpx.Response) -> str:
        body = _json(response)
        parts: list[str] = []
        if isinstance(body, dict):
            if isinstance(body.get("message"), str):
                parts.append(body["message"].strip())
            for item in body.get("errors") or []:
                if isinstance(item, dict) and isinstance(item.get("message"), str):
                    parts.append(item["message"].strip())
                elif isinstance(item, str):
                    parts.append(item.strip())
        text = "; ".join(p for p in parts if p) or response.reason_phrase or "no details"
        text = " ".join(text.split())
        if self._token:
            text = text.replace(self._token, "***")
        return text if len(text) <= _MAX_DETAIL_CHARS else text[: _MAX_DETAIL_CHARS - 3] + "..."


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _named_users(response: httpx.Response, logins: Sequence[str]) -> list[str]:
    """The requested logins GitHub's error body points at, if it names any."""
    body = _json(response)
    if not isinstance(body, dict):
        return []
    by_lower = {login.lower(): login for login in logins}
    named: list[str] = []
    for item in body.get("errors") or []:
        value = item.get("value") if isinstance(item, dict) else None
        if isinstance(value, str) and value.lower() in by_lower and by_lower[value.lower()] not in named:
            named.append(by_lower[value.lower()])
    return named


def _is_rate_limited_or_unavailable(response: httpx.Response) -> bool:
    if response.status_code in _RETRY_STATUSES:
        return True
    # GitHub signals exhausted primary and secondary rate limits with 403 plus these headers.
    return response.status_code == 403 and (
        response.headers.get("x-ratelimit-remaining") == "0" or "retry-after" in response.headers
    )


def _retry_after(response: httpx.Response) -> float | None:
    try:
        value = float(response.headers.get("retry-after", ""))
    except ValueError:
        return None
    return min(max(value, 0.0), _MAX_RETRY_AFTER_S)
