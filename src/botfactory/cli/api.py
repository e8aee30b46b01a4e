"""``botfactory openapi``: print the HTTP API's OpenAPI document (to generate clients, or to review changes)."""

from __future__ import annotations

import json

import click

from botfactory.cli.main import cli
from botfactory.server import full_document


@cli.command("openapi")
def openapi() -> None:
    """Print the OpenAPI 3.1 document of every HTTP operation botfactory serves."""
    click.echo(json.dumps(full_document(), indent=2, sort_keys=True))
