"""The ``botfactory`` command line."""

from botfactory.cli import admin, api, approvals, audit, chat, keys, runtime, secrets, serve, slack  # noqa: F401  (registers the commands)
from botfactory.cli.main import cli, main, run

__all__ = ["cli", "main", "run"]
