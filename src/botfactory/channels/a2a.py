"""The A2A channel: every bot served as an A2A agent (the Agent2Agent protocol), with its agent card.

``GET /a2a/{bot}/.well-known/agent-card.json`` is the bot's agent card: its name, description, one skill, the
JSON-RPC endpoint ``/a2a/{bot}`` and the ways to authenticate (``Authorization: Bearer <key>`` or ``X-Api-Key``).
The card needs no key, so A2A clients can discover how to authenticate; everything else does.

``POST /a2a/{bot}`` speaks A2A JSON-RPC (protocol 1.0 ``SendMessage`` and ``SendStreamingMessage``, and 0.3's
``message/send`` and ``message/stream``). Each message runs one turn of the bot in the session
``a2a:{bot}:{contextId}`` (the client's ``contextId``, or a new one), for the caller's user when the caller is a
JWT user, and is answered with one agent message carrying the reply; its metadata has ``session_id``, ``turn_id``
and ``status``. A retried message (same ``messageId`` from the same caller) is the same message, not new work.

Served with the official ``a2a-sdk`` server, installed by the ``a2a`` extra (``pip install 'botfactory[a2a]'``).
See docs/a2a.md.
"""

from __future__ import annotations

import importlib.util
from importlib.metadata import version as _version
from typing import Final

from starlette.routing import BaseRoute

from botfactory.errors import MissingExtraError
from botfactory.runtime import Runtime

__all__ = ["A2A_CARD_PATH", "A2A_PREFIX", "a2a_available", "a2a_routes"]

A2A_PREFIX: Final = "/a2a"
"""Where the bots are served: ``/a2a/{bot}``."""
A2A_CARD_PATH: Final = "/.well-known/agent-card.json"
"""The agent card's path below a bot's base URL, where A2A clients look for it."""


def a2a_available() -> bool:
    """Whether the ``a2a`` extra (the ``a2a-sdk`` server) is installed."""
    return all(importlib.util.find_spec(name) is not None for name in ("a2a", "sse_starlette"))


def a2a_routes(runtime: Runtime) -> list[BaseRoute]:
    """The A2A channel's routes, bound to a runtime.

    Raises:
        MissingExtraError: the ``a2a`` extra is not installed.
    """
    try:
        from botfactory.channels._a2a_server import a2a_server_routes
    except ImportError:
        raise MissingExtraError("a2a", "the A2A channel") from None
    return a2a_server_routes(runtime, prefix=A2A_PREFIX, card_path=A2A_CARD_PATH, version=_version("botfactory"))
