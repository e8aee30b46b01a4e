"""The long-running commands: ``up`` (everything), ``serve`` (HTTP and inbox) and ``worker`` (turns).

Each stops gracefully on SIGTERM or SIGINT (see :mod:`botfactory.cli._signals`) and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
from collections.abc import Awaitable, Callable, Generator
from typing import Literal

import click
import uvicorn

from botfactory.cli._output import console, startup_progress, stderr
from botfactory.cli._signals import StopNow, Stopper, run_stoppable
from botfactory.cli.main import cli, load_settings, run_async
from botfactory.config import Settings
from botfactory.errors import ConfigError
from botfactory.server import AuthMode, Platform, create_app, create_metrics_app, freeze_startup_heap

__all__ = ["check_port_free"]

Role = Literal["all", "serve", "worker"]


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


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the command's :class:`Stopper` owns SIGTERM and SIGINT.

    uvicorn would re-raise the signal after its shutdown, which kills the process before the runtime has
    released its leases.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def _start(stopper: Stopper, settings: Settings, role: Role, concurrency: int | None = None) -> Platform | None:
    with startup_progress() as (model_progress, docs_progress):
        platform = await stopper.unless_stopped(
            Platform.start(
                settings,
                role=role,
                concurrency=concurrency,
                install_progress=model_progress,
                ingest_progress=docs_progress,
            )
        )
    if platform is not None:
        freeze_startup_heap()
    return platform


async def _serve_http(settings: Settings, role: Role, stopper: Stopper) -> None:
    """Start the platform in ``role`` and serve HTTP until a signal; then stop gracefully."""
    check_port_free(settings.host, settings.port)
    if settings.agentcore_port is not None:
        check_port_free(settings.host, settings.agentcore_port)
    platform = await _start(stopper, settings, role)
    if platform is None:
        return
    try:
        app = create_app(platform, auth="keys" if role == "serve" else "local")
        config = uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level="warning",
            lifespan="off",
            # an invoke waiting for a reply holds its connection: give it the grace period, then close it
            timeout_graceful_shutdown=max(1, math.ceil(settings.runtime.shutdown_grace_s)),
        )
        server = _Server(config)
        contract = _agentcore_server(platform, auth="keys" if role == "serve" else "local")

        def stop_http() -> None:
            server.should_exit = True
            if contract is not None:
                contract.should_exit = True
            platform.runtime.end_streams()  # event streams follow forever: end them so the server can stop

        stopper.on_stop(stop_http)
        bots = ", ".join(bot.name for bot in platform.bots)
        url = f"http://{settings.host}:{settings.port}"
        if role == "serve":
            _say(f"botfactory serve is up at {url}  (bots: {bots}; turns run in `botfactory worker`)")
            if not await platform.api_keys.any_active():
                _say(
                    "warning: there are no API keys yet, so every request but /healthz, /ping and Slack's is refused "
                    "(401); create one: botfactory keys create --bot NAME"
                )
        else:
            _say(f"botfactory is up at {url}  (bots: {bots})")
            _say(
                "local development mode: requests from this machine need no API key "
                "(use `botfactory serve` with keys for anything else)"
            )
            _github_note(platform)
            _say("Talk to a bot: botfactory chat support    Stop: Ctrl-C")
        if settings.console.enabled:
            _say(f"Console: {url}/console/" + ("  (log in with an API key)" if role == "serve" else ""))
        if contract is not None:
            _say(f"AgentCore contract also at http://{settings.host}:{settings.agentcore_port}/invocations")
        if not stopper.requested.is_set():
            await asyncio.gather(server.serve(), *([contract.serve()] if contract is not None else []))
        _stopping(platform, stopper)
    finally:
        await platform.aclose()


def _agentcore_server(platform: Platform, *, auth: AuthMode) -> _Server | None:
    """A second server for only ``/invocations`` and ``/ping`` on ``agentcore_port``, when that is set."""
    settings = platform.settings
    if settings.agentcore_port is None:
        return None
    app = create_app(platform, auth=auth, agentcore_only=True)
    return _Server(
        uvicorn.Config(
            app,
            host=settings.host,
            port=settings.agentcore_port,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=max(1, math.ceil(settings.runtime.shutdown_grace_s)),
        )
    )


async def _work(settings: Settings, concurrency: int | None, stopper: Stopper) -> None:
    """Run turns until a signal; then stop claiming, let running turns finish, release the rest."""
    metrics_port = settings.metrics.worker_port
    if metrics_port is not None:
        check_port_free(settings.host, metrics_port)
    platform = await _start(stopper, settings, "worker", concurrency)
    if platform is None:
        _say("botfactory worker stopped before it finished starting")
        return
    scrape: asyncio.Task[None] | None = None
    try:
        if metrics_port is not None:
            server = _Server(
                uvicorn.Config(
                    create_metrics_app(platform),
                    host=settings.host,
                    port=metrics_port,
                    log_level="warning",
                    lifespan="off",
                )
            )
            scrape = asyncio.get_running_loop().create_task(server.serve(), name="worker-metrics")
            stopper.on_stop(lambda: setattr(server, "should_exit", True))
            _say(f"metrics at http://{settings.host}:{metrics_port}/metrics (API key required)")
        worker = platform.worker
        assert worker is not None, "role 'worker' always runs a worker"
        bots = ", ".join(bot.name for bot in platform.bots)
        _say(
            f"botfactory worker {worker.name} started: up to {worker.concurrency} turns at once "
            f"(bots: {bots}; database: {platform.settings.masked()['database_url']})"
        )
        _github_note(platform)
        await stopper.requested.wait()
        running, finished = worker.running, worker.stats.turns_finished
        _stopping(platform, stopper)
    finally:
        if scrape is not None:
            await asyncio.gather(scrape, return_exceptions=True)
        await platform.aclose()
    finished = worker.stats.turns_finished - finished
    _say(
        f"botfactory worker stopped: {finished} running turn(s) finished, "
        f"{max(running - finished, 0)} released for another worker to resume"
    )


def _say(line: str) -> None:
    """One line per message however narrow the terminal (supervisors and log collectors read these)."""
    console.print(line, markup=False, soft_wrap=True)


def _github_note(platform: Platform) -> None:
    if platform.github_demo is not None:
        _say(
            f"GitHub: demo stand-in at {platform.settings.github_base_url} "
            "(set BOTFACTORY_GITHUB_BASE_URL and BOTFACTORY_GITHUB_TOKEN for the real API)"
        )


def _stopping(platform: Platform, stopper: Stopper) -> None:
    worker = platform.worker
    why = f" ({stopper.signal_name})" if stopper.signal_name else ""
    if worker is not None and worker.running:
        grace = platform.settings.runtime.shutdown_grace_s
        _say(
            f"stopping{why}: taking no new turns; {worker.running} running turn(s) have {grace:g} s to finish "
            "(signal again to stop at once)"
        )
    else:
        _say(f"stopping{why}")


def _run(command: str, main: Callable[[Stopper], Awaitable[None]]) -> None:
    try:
        run_async(run_stoppable(main))
    except StopNow:
        stderr.print(f"{command} stopped at once: unfinished turns resume on any worker when their lease expires")
        raise click.exceptions.Exit(130) from None


_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def _check_local_host(host: str) -> None:
    """``up`` lets this machine in without a key, so it must not listen where other machines reach it."""
    if host not in _LOCAL_HOSTS:
        raise ConfigError(
            f"botfactory up is local development mode and listens on 127.0.0.1 only, not {host!r}; "
            "to serve other machines run `botfactory serve --host HOST` (it requires API keys: "
            "botfactory keys create --bot NAME) with `botfactory worker`"
        )


_PORT = click.option("--port", type=click.IntRange(1, 65535), help="HTTP port (default 8080).")
_HOST = click.option("--host", help="Interface to bind (default 127.0.0.1; `up` binds only 127.0.0.1 or ::1).")


@cli.command()
@_PORT
@_HOST
def up(port: int | None, host: str | None) -> None:
    """Run everything: store, local models, reference bots, the HTTP API and a worker."""
    settings = load_settings(port=port, host=host)
    _check_local_host(settings.host)
    _run("botfactory", lambda stopper: _serve_http(settings, "all", stopper))
    _say("botfactory stopped")


@cli.command()
@_PORT
@_HOST
def serve(port: int | None, host: str | None) -> None:
    """Serve the HTTP API and take messages into the inbox; run no turns and load no models.

    Start `botfactory worker` processes (on this host or others sharing the database) to answer them.
    """
    settings = load_settings(port=port, host=host)
    _run("botfactory serve", lambda stopper: _serve_http(settings, "serve", stopper))
    _say("botfactory serve stopped")


@cli.command()
@click.option(
    "--concurrency",
    type=click.IntRange(1, 4096),
    help="Turns this process runs at once (default runtime.concurrency, 32).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    help="Serve this worker's GET /metrics (API key required) on this port (default metrics.worker_port: none).",
)
def worker(concurrency: int | None, metrics_port: int | None) -> None:
    """Run turns from the inbox: no HTTP but an optional metrics port. Run as many as needed, on any hosts sharing
    the database."""
    settings = load_settings()
    if metrics_port is not None:
        settings = settings.model_copy(
            update={"metrics": settings.metrics.model_copy(update={"worker_port": metrics_port})}
        )
    _run("botfactory worker", lambda stopper: _work(settings, concurrency, stopper))
