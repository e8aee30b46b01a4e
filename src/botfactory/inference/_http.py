"""One JSON POST to a model endpoint, over aiohttp (the default) or an ``httpx`` transport (tests, custom transports).

The retry loop (:mod:`botfactory.inference._retry`) sees only :class:`HttpAnswer` and two exceptions, whichever
client sent the request: :class:`TransientHttpError` (connection lost or refused, timeout: worth retrying) and
:class:`UnreachableHttpError` (the request cannot be made at all: wrong scheme, bad URL, broken proxy settings).

aiohttp is the default because the hop to a model server on this machine is on every inference call: on the
development machine a keep-alive JSON POST costs about 0.3 ms of client CPU with aiohttp and about 1.3 ms with
``httpx`` (``BENCHMARKS.md``, inference endpoint overhead).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import httpx

if TYPE_CHECKING:
    import aiohttp

__all__ = [
    "AiohttpPoster",
    "HttpAnswer",
    "HttpxPoster",
    "JsonPoster",
    "TransientHttpError",
    "UnreachableHttpError",
]


class TransientHttpError(Exception):
    """The request failed on the way (refused, reset, timed out): trying again may work."""


class UnreachableHttpError(Exception):
    """The request cannot be sent as configured (bad URL or scheme, proxy misconfigured): retrying will not help."""


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """A complete HTTP response: status, headers (case-insensitive lookup) and the body read in full."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    reason: str = ""

    def json(self) -> Any:
        """The body parsed as JSON; ``ValueError`` when it is not JSON."""
        return json.loads(self.body)

    @property
    def text(self) -> str:
        """The body as text (undecodable bytes replaced)."""
        return self.body.decode("utf-8", errors="replace")


class JsonPoster(Protocol):
    """Sends one JSON POST and returns the whole answer; raises only the two errors above."""

    async def post(self, path: str, payload: Mapping[str, Any]) -> HttpAnswer: ...

    async def aclose(self) -> None: ...


class AiohttpPoster:
    """POSTs over one aiohttp session, opened on first use in the running event loop and bound to it until closed.

    Args:
        base_url: Endpoint root without a trailing slash; ``path`` is appended after a ``/``.
        headers: Sent with every request (the bearer token).
        timeout_s: Whole-request timeout; connecting is capped at 10 s so a dead server fails fast.
        trust_env: Honour proxy environment variables.
    """

    def __init__(self, base_url: str, *, headers: Mapping[str, str], timeout_s: float, trust_env: bool) -> None:
        self._base_url = base_url
        self._headers = {**headers, "Content-Type": "application/json"}
        self._timeout_s = timeout_s
        self._trust_env = trust_env
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def post(self, path: str, payload: Mapping[str, Any]) -> HttpAnswer:
        import aiohttp

        session = self._session_for_this_loop(aiohttp)
        data = json.dumps(payload, ensure_ascii=False).encode()
        try:
            async with session.post(f"{self._base_url}/{path}", data=data, headers=self._headers) as response:
                body = await response.read()
                return HttpAnswer(response.status, response.headers, body, response.reason or "")
        except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError, aiohttp.ClientProxyConnectionError) as exc:
            raise UnreachableHttpError(_describe(exc)) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientHttpError(_describe(exc)) from exc

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed and self._loop is asyncio.get_running_loop():
            await session.close()

    def _session_for_this_loop(self, aiohttp: Any) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is not None and not self._session.closed and self._loop is not loop:
            raise RuntimeError(
                f"the HTTP client for {self._base_url} is open in another event loop; "
                "await its aclose() in that loop before using it in this one"
            )
        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(total=self._timeout_s, connect=min(self._timeout_s, 10.0))
            self._session = aiohttp.ClientSession(timeout=timeout, trust_env=self._trust_env)
            self._loop = loop
        return self._session


class HttpxPoster:
    """POSTs through an ``httpx`` client with the given transport (``httpx.MockTransport`` in tests)."""

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str],
        timeout_s: float,
        trust_env: bool,
        transport: httpx.AsyncBaseTransport,
    ) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url + "/",
            headers=dict(headers),
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
            transport=transport,
            trust_env=trust_env,
        )

    async def post(self, path: str, payload: Mapping[str, Any]) -> HttpAnswer:
        try:
            response = await self._client.post(path, json=payload)
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise TransientHttpError(_describe(exc)) from exc
        except httpx.TransportError as exc:
            raise UnreachableHttpError(_describe(exc)) from exc
        return HttpAnswer(response.status_code, response.headers, response.content, response.reason_phrase)

    async def aclose(self) -> None:
        await self._client.aclose()


def _describe(exc: BaseException) -> str:
    return type(exc).__name__
