"""What the caller's API key allows: the principal the server's authentication middleware left on the request."""

from __future__ import annotations

from starlette.requests import Request

from botfactory.errors import ForbiddenError, SessionNotFoundError
from botfactory.identity import Principal

__all__ = ["acting_user", "caller_groups", "check_bot_allowed", "check_session_visible", "key_bot", "principal_of"]


def principal_of(request: Request) -> Principal | None:
    """The caller, or ``None`` when the app runs without the authentication middleware (in-process use)."""
    principal = getattr(request.state, "principal", None)
    return principal if isinstance(principal, Principal) else None


def key_bot(request: Request) -> str | None:
    """The one bot the caller's key is limited to, if any."""
    principal = principal_of(request)
    return principal.bot if principal is not None else None


def check_bot_allowed(request: Request, bot: str) -> None:
    """Refuse a caller whose key is limited to another bot.

    Raises:
        ForbiddenError: the key may not use ``bot``.
    """
    principal = principal_of(request)
    if principal is not None:
        principal.check_bot(bot)


def acting_user(request: Request, named: str | None) -> str | None:
    """The user a message is from: a JWT caller's own user id, else the one the request names.

    Raises:
        ForbiddenError: a JWT caller names another user than itself.
    """
    principal = principal_of(request)
    if principal is None or principal.user_id is None:
        return named
    if named is not None and named != principal.user_id:
        raise ForbiddenError(
            f"this token is for user '{principal.user_id}' and cannot send messages as another user; "
            "leave user_id (or user) out of the request, or set it to that value"
        )
    return principal.user_id


def caller_groups(request: Request) -> tuple[str, ...]:
    """The groups the caller's token names (JWT ``groups`` claim), for tool policies; none for API keys."""
    principal = principal_of(request)
    return tuple(sorted(principal.groups)) if principal is not None else ()


def check_session_visible(request: Request, session_id: str, bot: str) -> None:
    """Answer as if the session did not exist when it belongs to a bot the caller's key may not use.

    Session ids are often guessable (Slack's are ``team:channel:ts``): a key for one bot must neither read nor
    cancel another bot's sessions, nor learn that they exist.

    Raises:
        SessionNotFoundError: the session belongs to another bot than the key's.
    """
    principal = principal_of(request)
    if principal is not None and not principal.allows_bot(bot):
        raise SessionNotFoundError(f"no session {session_id!r}; list sessions with `botfactory sessions list`")
