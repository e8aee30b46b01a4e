"""A local stand-in for the slice of the GitHub REST API the support bot uses.

:class:`GitHubStandIn` answers Copilot seat assignment, seat listing and org membership in GitHub's request and
response shapes, records every successful assignment, and honours ``Idempotency-Key``. Use it in tests (in process
through ``httpx.ASGITransport``, or on a real server with :func:`run_standin_server`) and in demos when no real GitHub
is configured. Its ``.app`` can be mounted under a prefix in a larger Starlette app.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Protocol

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["DEFAULT_MEMBERS", "DEFAULT_OUTSIDE_USERS", "GitHubStandIn", "SeatCall", "run_standin_server"]

DEFAULT_MEMBERS: Final = ("octocat", "mona", "alice-dev", "bob-ops")
"""Org members of the default stand-in: the bot grants them seats directly."""

DEFAULT_OUTSIDE_USERS: Final = ("hubot", "carol-contractor")
"""GitHub users that exist but are not org members: seat requests for them need approval."""

_DOCS: Final = "https://docs.github.com/rest/copilot/copilot-user-management"
_MEMBERS_DOCS: Final = "https://docs.github.com/rest/orgs/members#check-organization-membership-for-a-user"


@dataclass(frozen=True, kw_only=True)
class SeatCall:
    """One successful seat assignment the stand-in applied.

    Attributes:
        usernames: The logins as the request sent them.
        idempotency_key: The request's ``Idempotency-Key``, if any.
        at: When the call was applied (UTC).
        seats_created: How many of the users did not hold a seat before.
    """

    usernames: tuple[str, ...]
    idempotency_key: str | None
    at: datetime
    seats_created: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The call as JSON-ready data."""
        return {
            "usernames": list(self.usernames),
            "idempotency_key": self.idempotency_key,
            "at": self.at.isoformat(),
            "seats_created": self.seats_created,
        }


@dataclass
class _Seat:
    login: str
    user_id: int
    created_at: datetime


@dataclass
class _Replay:
    usernames: tuple[str, ...]
    status: int
    body: dict[str, Any] = field(default_factory=dict)


class GitHubStandIn:
    """An in-memory GitHub organization with Copilot seats, served as a Starlette app.

    Args:
        org: The only organization that exists.
        token: The bearer token requests must carry; ``None`` accepts any request.
        members: Logins that are members of ``org``.
        users: Further logins that exist on "GitHub" without being members. Members always exist.
        clock: Returns the current UTC time; injectable for tests.

    Attributes:
        org: The organization name.
        calls: Successful seat assignments, oldest first; replays of an ``Idempotency-Key`` are not recorded.
        seats: Logins currently holding a seat.
        app: The ASGI application.
    """

    def __init__(
        self,
        *,
        org: str = "example-org",
        token: str | None = "demo-token",
        members: Iterable[str] = DEFAULT_MEMBERS,
        users: Iterable[str] = DEFAULT_OUTSIDE_USERS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.org = org
        self._token = token
        self._clock = clock
        self._lock = threading.Lock()
        self._members = {login.lower() for login in members}
        self._users: dict[str, str] = {}
        for login in (*members, *users):
            self._users.setdefault(login.lower(), login)
        self._ids = {lower: 1000 + i for i, lower in enumerate(self._users)}
        self._seats: dict[str, _Seat] = {}
        self._replays: dict[str, _Replay] = {}
        self.calls: list[SeatCall] = []
        self.app = Starlette(
            routes=[
                Route("/orgs/{org}/copilot/billing/selected_users", self._assign, methods=["POST"]),
                Route("/orgs/{org}/copilot/billing/seats", self._list_seats, methods=["GET"]),
                Route("/orgs/{org}/members/{username}", self._member, methods=["GET"]),
                Route("/_standin/calls", self._calls, methods=["GET"]),
            ]
        )

    @property
    def seats(self) -> set[str]:
        """Logins currently holding a Copilot seat (as GitHub spells them)."""
        with self._lock:
            return {seat.login for seat in self._seats.values()}

    def add_member(self, login: str) -> None:
        """Make ``login`` an existing user and a member of the org, e.g. to script a demo."""
        with self._lock:
            lower = login.lower()
            self._users.setdefault(lower, login)
            self._ids.setdefault(lower, 1000 + len(self._ids))
            self._members.add(lower)

    def _check(self, request: Request, org: str) -> Response | None:
        """Authentication, then the org: GitHub answers 401 before it reveals whether an org exists."""
        if self._token is not None and request.headers.get("authorization", "") not in (
            f"Bearer {self._token}",
            f"token {self._token}",
        ):
            return _error(401, "Bad credentials", "https://docs.github.com/rest")
        if org.lower() != self.org.lower():
            return _error(404, "Not Found", _DOCS)
        return None

    async def _assign(self, request: Request) -> Response:
        if (refused := self._check(request, request.path_params["org"])) is not None:
            return refused
        raw = await request.body()
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            return _error(400, "Problems parsing JSON", _DOCS)
        names = payload.get("selected_usernames") if isinstance(payload, dict) else None
        if names is None:
            return _error(422, 'Invalid request.\n\n"selected_usernames" wasn\'t supplied.', _DOCS)
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
            return _error(422, "Invalid request.\n\nselected_usernames must be a non-empty array of logins.", _DOCS)
        usernames = tuple(names)
        key = request.headers.get("idempotency-key")
        with self._lock:
            if key is not None and (replay := self._replays.get(key)) is not None:
                if replay.usernames != usernames:
                    return _error(422, "Idempotency-Key was already used with a different request body.", _DOCS)
                return JSONResponse(replay.body, status_code=replay.status)
            unknown = [n for n in usernames if n.lower() not in self._users]
            if unknown:
                return JSONResponse(
                    {
                        "message": "Validation Failed",
                        "errors": [
                            {
                                "resource": "User",
                                "field": "selected_usernames",
                                "code": "invalid",
                                "value": n,
                                "message": f"GitHub user '{n}' does not exist",
                            }
                            for n in unknown
                        ],
                        "documentation_url": _DOCS,
                    },
                    status_code=422,
                )
            now = self._clock()
            created = 0
            for name in usernames:
                lower = name.lower()
                if lower not in self._seats:
                    self._seats[lower] = _Seat(login=self._users[lower], user_id=self._ids[lower], created_at=now)
                    created += 1
            self.calls.append(SeatCall(usernames=usernames, idempotency_key=key, at=now, seats_created=created))
            body = {"seats_created": created}
            if key is not None:
                self._replays[key] = _Replay(usernames=usernames, status=201, body=body)
        return JSONResponse(body, status_code=201)

    async def _list_seats(self, request: Request) -> Response:
        if (refused := self._check(request, request.path_params["org"])) is not None:
            return refused
        try:
            per_page = min(max(int(request.query_params.get("per_page", "50")), 1), 100)
            page = max(int(request.query_params.get("page", "1")), 1)
        except ValueError:
            return _error(422, "Invalid request.\n\npage and per_page must be integers.", _DOCS)
        with self._lock:
            seats = sorted(self._seats.values(), key=lambda s: (s.created_at, s.login.lower()))
        window = seats[(page - 1) * per_page : page * per_page]
        return JSONResponse(
            {
                "total_seats": len(seats),
                "seats": [
                    {
                        "created_at": seat.created_at.isoformat(),
                        "pending_cancellation_date": None,
                        "last_activity_at": None,
                        "assignee": {"login": seat.login, "id": seat.user_id, "type": "User"},
                    }
                    for seat in window
                ],
            }
        )

    async def _member(self, request: Request) -> Response:
        if (refused := self._check(request, request.path_params["org"])) is not None:
            return refused
        with self._lock:
            is_member = request.path_params["username"].lower() in self._members
        if is_member:
            return Response(status_code=204)
        return _error(404, "Not Found", _MEMBERS_DOCS)

    async def _calls(self, request: Request) -> Response:
        with self._lock:
            calls = [call.to_dict() for call in self.calls]
            seats = sorted(seat.login for seat in self._seats.values())
        return JSONResponse({"org": self.org, "calls": calls, "seats": seats})


def _error(status: int, message: str, documentation_url: str) -> JSONResponse:
    return JSONResponse({"message": message, "documentation_url": documentation_url}, status_code=status)


class _Served(Protocol):
    app: Any


@contextlib.contextmanager
def run_standin_server(standin: _Served, *, host: str = "127.0.0.1", startup_timeout_s: float = 10.0) -> Iterator[str]:
    """Serve a stand-in on a real uvicorn server on a free local port, in a background thread.

    Example:
        >>> with run_standin_server(GitHubStandIn()) as base_url:  # doctest: +SKIP
        ...     client = GitHubCopilotClient(base_url, "example-org", "demo-token")

    Args:
        standin: The stand-in to serve (anything with an ASGI ``app``: GitHub, Slack).
        host: Interface to bind; keep the default outside of deliberate demos.
        startup_timeout_s: How long to wait for the server to accept connections.

    Yields:
        The base URL, e.g. ``http://127.0.0.1:54321``.

    Raises:
        RuntimeError: If the server does not start in time.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port: int = sock.getsockname()[1]
    config = uvicorn.Config(standin.app, log_level="warning", lifespan="off", ws="none", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="github-standin", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + startup_timeout_s
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the GitHub stand-in did not start on {host}:{port}")
            time.sleep(0.01)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=startup_timeout_s)
        sock.close()
