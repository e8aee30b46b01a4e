"""What every console page shares: who is looking, the login cookie, CSRF checks, templates and error pages."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol
from urllib.parse import parse_qs, quote, urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from botfactory.agents import Engine
from botfactory.config import Settings
from botfactory.console import _format
from botfactory.console._tokens import csrf_token, read_token
from botfactory.errors import (
    BotfactoryError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    PayloadTooLargeError,
    UnauthenticatedError,
)
from botfactory.identity import ApiKeys, OidcVerifier, Principal
from botfactory.runtime import Runtime
from botfactory.store import Store

__all__ = ["PREFIX", "ConsolePlatform", "ConsoleState", "Handler", "Viewer"]

logger = logging.getLogger(__name__)

PREFIX: Final = "/console"
COOKIE: Final = "bf_console"
_MAX_FORM_BYTES: Final = 64 * 1024
_TEMPLATES: Final = Path(__file__).parent / "templates"


class ConsolePlatform(Protocol):
    """The running services the console reads and operates (``botfactory.server.Platform`` is one)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def store(self) -> Store: ...

    @property
    def runtime(self) -> Runtime: ...

    @property
    def engine(self) -> Engine: ...

    @property
    def api_keys(self) -> ApiKeys: ...

    @property
    def oidc(self) -> OidcVerifier | None: ...


@dataclass(frozen=True, kw_only=True)
class Viewer:
    """Who is looking at a page, and the CSRF token their forms carry."""

    principal: Principal
    csrf: str

    @property
    def name(self) -> str:
        """How the principal is shown (and named as an approver)."""
        return approver_name(self.principal)

    def allows(self, bot: str) -> bool:
        """Whether the viewer may see and operate bot ``bot``."""
        return self.principal.allows_bot(bot)


def approver_name(principal: Principal) -> str:
    """The principal as the approvals API names a decider: ``local``, ``key:<id>`` or the user id."""
    if principal.kind == "local":
        return "local"
    if principal.kind == "api_key":
        return f"key:{principal.key_id}"
    return principal.user_id or f"{principal.kind}:unknown"


Handler = Callable[[Request, Viewer], Awaitable[Response]]


class ConsoleState:
    """The console's services, secret and templates; one per app.

    Args:
        platform: The running services.
        secret: Signs login cookies and CSRF tokens.
        clock: Epoch seconds; tests inject one.
    """

    def __init__(self, platform: ConsolePlatform, *, secret: bytes, clock: Callable[[], float] = time.time) -> None:
        self.platform = platform
        self.secret = secret
        self.clock = clock
        self._revoked: dict[str, tuple[float, bool]] = {}
        self.templates = Environment(
            loader=FileSystemLoader(_TEMPLATES),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.globals.update(prefix=PREFIX)
        self.templates.filters.update(_format.FILTERS)

    @property
    def runtime(self) -> Runtime:
        """The runtime as channels see it."""
        return self.platform.runtime

    # Who is looking

    async def viewer(self, request: Request) -> Viewer | None:
        """The logged-in principal (cookie), else the local principal the auth middleware let in, else ``None``."""
        cookie = request.cookies.get(COOKIE)
        if cookie:
            login = read_token(self.secret, cookie, now=self.clock())
            if login is not None and not await self._revoked_key(login.principal):
                return Viewer(principal=login.principal, csrf=csrf_token(self.secret, cookie))
        local = request.scope.get("state", {}).get("principal")
        if isinstance(local, Principal) and local.kind == "local":
            return Viewer(principal=local, csrf=csrf_token(self.secret, None))
        return None

    async def _revoked_key(self, principal: Principal) -> bool:
        """Whether the key a login was made with is revoked (or gone); checked at most every ``auth_cache_s``."""
        if principal.kind != "api_key" or principal.key_id is None:
            return False
        now = self.clock()
        cached = self._revoked.get(principal.key_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            revoked = (await self.platform.api_keys.store.get(principal.key_id)).revoked
        except NotFoundError:
            revoked = True
        if len(self._revoked) > 10_000:
            self._revoked.clear()
        self._revoked[principal.key_id] = (now + self.platform.settings.auth_cache_s, revoked)
        return revoked

    # Pages

    def render(self, template: str, *, viewer: Viewer | None, status: int = 200, **context: Any) -> HTMLResponse:
        """A page from ``templates/<template>``."""
        html = self.templates.get_template(template).render(viewer=viewer, **context)
        return HTMLResponse(html, status_code=status, headers=_NO_STORE)

    def error(self, exc: BotfactoryError, *, viewer: Viewer | None, back: str | None = None) -> HTMLResponse:
        """An error page saying what went wrong and what to do next, with the error's HTTP status."""
        status = exc.http_status if 400 <= exc.http_status < 600 else 500
        title = {401: "Log in first", 403: "Not allowed", 404: "Not found", 409: "Already done"}.get(
            status, "Something went wrong"
        )
        return self.render("error.html", viewer=viewer, status=status, title=title, error=exc, back=back)

    def guard(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """Wrap a page: log in or redirect, check the CSRF token of a POST, turn errors into error pages."""

        async def endpoint(request: Request) -> Response:
            viewer = await self.viewer(request)
            if viewer is None:
                accept = request.headers.get("accept", "")
                if "application/json" in accept or "text/event-stream" in accept:  # the chat's fetch and stream
                    refused = UnauthenticatedError("log in to the console first, at /console/login")
                    return JSONResponse({"error": refused.to_dict()}, status_code=401)
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                if request.method != "GET":  # a form posted after the login ended: log in, then start over
                    target = _back(request) or f"{PREFIX}/sessions"
                return RedirectResponse(f"{PREFIX}/login?next={quote(target, safe='')}", status_code=303)
            try:
                if request.method == "POST":
                    await self.check_csrf(request, viewer)
                return await handler(request, viewer)
            except BotfactoryError as exc:
                if exc.http_status >= 500:
                    logger.warning("path=<%s>, code=<%s> | console page failed: %s", request.url.path, exc.code, exc)
                return self.error(exc, viewer=viewer, back=_back(request))
            except Exception:
                logger.exception("path=<%s> | console page failed", request.url.path)
                return self.error(BotfactoryError("the page failed unexpectedly; see the server log"), viewer=viewer)

        return endpoint

    async def check_csrf(self, request: Request, viewer: Viewer) -> None:
        """Refuse a POST that does not carry the viewer's CSRF token (a form on another site cannot know it).

        Raises:
            ForbiddenError: the token is missing or wrong.
        """
        presented = request.headers.get("x-csrf-token") or (await form(request)).get("csrf", "")
        if not presented or not _equal(presented, viewer.csrf):
            raise ForbiddenError("the form's security token is missing or stale; reload the page and try again")


def _back(request: Request) -> str | None:
    """The console page the browser came from, for an error page's "Go back" (never another site)."""
    referer = urlsplit(request.headers.get("referer", ""))
    if referer.netloc != request.headers.get("host") or not referer.path.startswith(PREFIX + "/"):
        return None
    return referer.path + (f"?{referer.query}" if referer.query else "")


def _equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "replace"), b.encode("utf-8", "replace"))


async def form(request: Request) -> dict[str, str]:
    """The URL-encoded form of a POST (first value of each field), read once and kept on the request.

    Raises:
        PayloadTooLargeError: the body is over 64 KiB.
        InvalidInputError: the body is not a URL-encoded form.
    """
    cached = request.scope.get("botfactory.console.form")
    if isinstance(cached, dict):
        return cached
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > _MAX_FORM_BYTES:
            raise PayloadTooLargeError(f"the form is over the limit of {_MAX_FORM_BYTES} bytes")
    kind = request.headers.get("content-type", "application/x-www-form-urlencoded").split(";")[0].strip()
    if body and kind != "application/x-www-form-urlencoded":
        raise InvalidInputError("send the form URL-encoded (application/x-www-form-urlencoded)")
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=100)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInputError(f"the form cannot be read ({exc})") from None
    values = {name: found[0] for name, found in parsed.items()}
    request.scope["botfactory.console.form"] = values
    return values


_NO_STORE: Final = {"cache-control": "no-store", "x-frame-options": "DENY", "referrer-policy": "same-origin"}
