"""The ``botfactory`` command line."""

from botfactory.cli import (  # noqa: F401  (registers the commands)
    admin,
    alerts,
    api,
    approvals,
    audit,
    chat,
    costs,
    keys,
    runtime,
    secrets,
    serve,
    slack,
    traces,
)
from botfactory.cli.main import cli, main, run

__all__ = ["cli", "main", "run"]
