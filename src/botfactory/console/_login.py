"""Logging in to the console with an API key (or an OpenID Connect token), and out again.

A good credential earns an HttpOnly, SameSite=Strict cookie holding a signed token that names the principal and
expires after ``[console] login_hours`` — or when the OpenID Connect token it was made with expires, if sooner. The
credential itself is never stored. A login made with a key that is revoked later ends within ``auth_cache_s``.
"""

from __future__ import annotations

import logging
import math
from typing import Final
from urllib.parse import urlsplit

import jwt
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from botfactory.console._core import COOKIE, PREFIX, ConsoleState, Viewer, form
from botfactory.console._sessions import safe_next
from botfactory.console._tokens import issue_token
from botfactory.errors import BotfactoryError, ForbiddenError, UnauthenticatedError
from botfactory.identity import JWT_SHAPE, Principal

__all__ = ["login_routes"]

logger = logging.getLogger(__name__)

_HOME: Final = f"{PREFIX}/sessions"


def login_routes(state: ConsoleState) -> list[BaseRoute]:
    """The login and logout routes."""

    async def login_page(request: Request) -> Response:
        target = safe_next(request.query_params.get("next"), _HOME)
        if await state.viewer(request) is not None:
            return RedirectResponse(target, status_code=303)
        return _form(state, target)

    async def login(request: Request) -> Response:
        try:
            _check_origin(request)
            fields = await form(request)
            target = safe_next(fields.get("next"), _HOME)
            credential = fields.get("credential", "").strip()
            if not credential:
                what = (
                    "an API key (bf_...) or an OpenID Connect token" if state.platform.oidc else "an API key (bf_...)"
                )
                raise UnauthenticatedError(f"paste {what} to log in")
            principal = await _verify(state, credential)
        except BotfactoryError as exc:
            logger.info(
                "client=<%s>, code=<%s> | console login refused", request.client and request.client.host, exc.code
            )
            return _form(state, safe_next(request.query_params.get("next"), _HOME), error=exc)
        ttl_s = state.platform.settings.console.login_hours * 3600.0
        if principal.kind == "jwt":  # no longer than the token itself: the issuer decides how long it is good for
            ttl_s = max(1.0, min(ttl_s, _token_expiry(credential) - state.clock()))
        token = issue_token(state.secret, principal, now=state.clock(), ttl_s=ttl_s)
        logger.info("kind=<%s>, key_id=<%s>, bot=<%s> | console login", principal.kind, principal.key_id, principal.bot)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            COOKIE,
            token,
            max_age=int(ttl_s),
            path=PREFIX,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def logout(request: Request, viewer: Viewer) -> Response:
        response = RedirectResponse(f"{PREFIX}/login", status_code=303)
        response.delete_cookie(COOKIE, path=PREFIX, httponly=True, samesite="strict")
        return response

    return [
        Route(f"{PREFIX}/login", login_page, methods=["GET"]),
        Route(f"{PREFIX}/login", login, methods=["POST"]),
        Route(f"{PREFIX}/logout", state.guard(logout), methods=["POST"]),
    ]


def _form(state: ConsoleState, target: str, *, error: BotfactoryError | None = None) -> Response:
    # A refused login is a 403 page: a 401 would need a WWW-Authenticate scheme, and the form is not HTTP auth.
    status = 200 if error is None else (400 if error.http_status in (400, 413) else 403)
    return state.render(
        "login.html",
        viewer=None,
        status=status,
        next=target,
        error=error,
        oidc=state.platform.oidc is not None,
    )


async def _verify(state: ConsoleState, credential: str) -> Principal:
    """The principal a pasted credential stands for: an API key, or a JWT when ``[oidc]`` is set."""
    oidc = state.platform.oidc
    if JWT_SHAPE.fullmatch(credential) is not None:
        if oidc is None:
            raise UnauthenticatedError("OpenID Connect tokens are not enabled on this server; log in with an API key")
        return await oidc.verify(credential)
    return await state.platform.api_keys.authenticate(credential)


def _token_expiry(token: str) -> float:
    """The ``exp`` of a JWT already verified by the OIDC verifier (which requires it); infinity without one."""
    claims = jwt.decode(token, options={"verify_signature": False})
    exp = claims.get("exp")
    return float(exp) if isinstance(exp, int | float) else math.inf


def _check_origin(request: Request) -> None:
    """Refuse a login posted by a page of another site (it would log the browser in as someone else)."""
    origin = request.headers.get("origin")
    if origin is None:
        return
    if urlsplit(origin).netloc != request.headers.get("host", ""):
        raise ForbiddenError("log in from the console's own login page")
