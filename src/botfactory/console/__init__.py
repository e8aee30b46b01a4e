"""The web console: server-rendered pages to watch sessions and their traces, chat with bots, decide approvals,
handle alerts and dead letters, see bots and their kill switches, and follow costs (see docs/console.md).

Served at ``/console`` by :func:`botfactory.server.create_app` when ``[console] enabled`` (the default).
"""

from botfactory.console._core import COOKIE, PREFIX, ConsolePlatform
from botfactory.console.routes import console_routes, console_secret

__all__ = ["COOKIE", "PREFIX", "ConsolePlatform", "console_routes", "console_secret"]
