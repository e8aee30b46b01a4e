"""The server process of the HTTP benchmarks: one app on 127.0.0.1, served like ``botfactory serve`` does.

    python bench/http_server.py --app bare|messages|messages-nostore|slack|slack-serve|slack-worker --port PORT
        --home DIR [--slack-url URL]

``bare``: a Starlette endpoint that parses a JSON body and answers 202 (the floor). ``messages``: botfactory's
app with API keys required and no worker (``botfactory serve``); prints the key. ``messages-nostore``: the same
with the inbox write replaced by a no-op (a diagnostic: what the HTTP layer alone costs; nothing is stored). ``slack``: botfactory's app
with Slack configured and a worker answering with a zero-latency model, replies posted to the Slack stand-in
at ``--slack-url`` (``botfactory slack standin`` in its own process: Slack is not on the server's machine), or to
one in this process (``botfactory up``). ``slack-serve`` and ``slack-worker`` split ``slack`` in two processes
sharing ``--home``'s database, as ``botfactory serve`` and ``botfactory worker`` do: the first acks (no worker),
the second runs the turns and posts the replies (it serves no HTTP; ``--port`` is ignored). Prints ``ready [key]``
when listening; stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from botfactory.agents import Agent, Bot
from botfactory.config import Settings
from botfactory.server import Platform, create_app, freeze_startup_heap
from botfactory.store import Enqueued, Inbound
from botfactory.testing import ScriptedModel, SlackStandIn, run_standin_server, scripted_inference

SIGNING_SECRET = "bench-signing-secret"


def bare_app() -> Starlette:
    async def accept(request: Request) -> Response:
        body = json.loads(await request.body())
        return JSONResponse({"message_id": "m", "session_id": body.get("text", ""), "seq": 1}, status_code=202)

    return Starlette(routes=[Route("/v1/bots/{bot}/sessions/{session_id}/messages", accept, methods=["POST"])])


async def serve(kind: str, port: int, home: Path, slack_url: str | None) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    platform: Platform | None = None
    extra = ""
    with contextlib.ExitStack() as stack:
        if slack_url is None:
            slack_url = stack.enter_context(run_standin_server(SlackStandIn(token="xoxb-bench")))
        slack = kind.startswith("slack")
        if kind == "bare":
            app = bare_app()
        else:
            settings = Settings.load(
                home=home,
                slack_signing_secret=SIGNING_SECRET if slack else None,
                slack_bot_token="xoxb-bench" if slack else None,
                slack_bot="echo",
                slack_api_url=f"{slack_url}/api/",
            )
            echo = ScriptedModel(["ok"], cycle=True)
            platform = await Platform.start(
                settings,
                inference=scripted_inference({"large": echo, "small": echo}),
                role={"slack": "all", "slack-worker": "worker"}.get(kind, "serve"),
            )
            platform.bots.add(Bot(name="echo", agent=Agent(name="echo", instructions="Answer.", model="small")))
            if kind.startswith("messages"):
                extra = " " + (await platform.api_keys.create(bot="echo", name="bench")).secret
            if kind == "messages-nostore":

                async def no_write(message: Inbound, policy: str = "enqueue") -> Enqueued:
                    return Enqueued(message_id="m", session_id=message.session_id, seq=1, duplicate=False)

                platform.runtime.queue.enqueue = no_write  # type: ignore[method-assign]
            app = create_app(platform, auth="keys" if kind.startswith("messages") else "local")
        freeze_startup_heap()  # as the CLI's long-running commands do once started
        if kind == "slack-worker":
            print("ready", flush=True)
            await stop.wait()
            assert platform is not None
            await platform.aclose()
            return
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
        task = asyncio.create_task(server.serve())
        while not server.started:  # noqa: ASYNC110 - uvicorn exposes only a flag
            await asyncio.sleep(0.02)
        print(f"ready{extra}", flush=True)
        await stop.wait()
        server.should_exit = True
        await task
        if platform is not None:
            await platform.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--app",
        choices=["bare", "messages", "messages-nostore", "slack", "slack-serve", "slack-worker"],
        required=True,
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--slack-url", help="A Slack stand-in running elsewhere (default: one in this process).")
    arguments = parser.parse_args()
    asyncio.run(serve(arguments.app, arguments.port, arguments.home, arguments.slack_url))
