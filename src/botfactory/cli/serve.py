"""``botfactory up``: the whole platform in one process, embedded defaults."""

from __future__ import annotations

import socket

import click
import uvicorn

from botfactory.cli._output import console, startup_progress
from botfactory.cli.main import cli, load_settings, run_async
from botfactory.config import Settings
from botfactory.errors import ConfigError
from botfactory.server import Platform, create_app


def check_port_free(host: str, port: int) -> None:
    """Fail early, before models load, when the port is taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{port} ({exc.strerror}); pass --port or stop the other server"
            ) from None


async def serve(settings: Settings) -> None:
    """Start the platform and serve HTTP until interrupted."""
    check_port_free(settings.host, settings.port)
    with startup_progress() as (model_progress, docs_progress):
        platform = await Platform.start(settings, install_progress=model_progress, ingest_progress=docs_progress)
    try:
        app = create_app(platform)
        config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning", lifespan="off")
        server = uvicorn.Server(config)
        bots = ", ".join(bot.name for bot in platform.bots)
        console.print(f"botfactory is up at http://{settings.host}:{settings.port}  (bots: {bots})")
        if platform.github_demo is not None:
            console.print(
                f"GitHub: demo stand-in at {platform.settings.github_base_url} "
                "(set BOTFACTORY_GITHUB_BASE_URL and BOTFACTORY_GITHUB_TOKEN for the real API)"
            )
        console.print("Talk to a bot: botfactory chat support    Stop: Ctrl-C")
        await server.serve()
    finally:
        await platform.aclose()


@cli.command()
@click.option("--port", type=click.IntRange(1, 65535), help="HTTP port (default 8080).")
@click.option("--host", help="Interface to bind (default 127.0.0.1).")
def up(port: int | None, host: str | None) -> None:
    """Run everything: store, local models, reference bots and the HTTP API."""
    try:
        run_async(serve(load_settings(port=port, host=host)))
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled once it has shut down cleanly
        console.print("botfactory stopped")
