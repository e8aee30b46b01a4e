"""Slack ack latency: signed Events API requests at a fixed rate, from this (separate) process.

The server is botfactory as ``botfactory up`` runs it, in a subprocess: Slack configured, a worker answering
every message with a zero-latency model and posting a "thinking…" placeholder and the reply (two Web API calls per
message) to the Slack stand-in, run in a process of its own (``botfactory slack standin``; Slack is not on the
server's machine), so turns and replies compete with the acks for the CPU as they would in production. Every request is a new human message (its own
``event_id`` and ``ts``), signed like Slack signs it. Latency counts from each request's scheduled send time.
Baseline, same run: the bare Starlette endpoint of ``bench_http_messages.py`` at the same rate.

``--topology serve+worker`` runs the acks and the turns in two processes sharing one SQLite database, as
``botfactory serve`` and ``botfactory worker`` do in production (``up``, the default topology here, is one process).

    python bench/bench_slack_ack.py [--rate 200] [--seconds 30] [--topology up|serve+worker]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _load import Results, open_loop, post
from bench_http_messages import free_port, start
from http_server import SIGNING_SECRET


def signed_message(i: int) -> bytes:
    ts = f"{1_700_000_000 + i}.{i % 1_000_000:06d}"
    body = json.dumps(
        {
            "type": "event_callback",
            "team_id": "T0BENCH",
            "api_app_id": "A0BENCH",
            "event_id": f"Ev{i:010d}",
            "event_time": int(time.time()),
            "event": {
                "type": "message",
                "channel": f"C{i % 50:04d}",
                "user": "U0HUMAN",
                "text": f"question {i}",
                "ts": ts,
                "channel_type": "channel",
            },
        }
    ).encode()
    stamp = str(int(time.time()))
    digest = hmac.new(SIGNING_SECRET.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    headers = {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={digest}"}
    return post("/slack/events", body, headers)


def bare_message(i: int) -> bytes:
    return post(f"/v1/bots/echo/sessions/s{i % 1000}/messages", json.dumps({"text": f"m{i}"}).encode(), {})


def wait_for_port(port: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"nothing listens on port {port}")


def measure(kind: str, home: Path, rate: float, seconds: float, *extra: str) -> Results:
    worker = start("slack-worker", home, *extra)[0] if kind == "slack-serve" else None
    process, port, _ = start(kind, home, *extra)
    make = signed_message if kind.startswith("slack") else bare_message
    try:
        return asyncio.run(open_loop(port, make, rate=rate, duration_s=seconds))
    finally:
        for child in (process, worker):
            if child is not None:
                child.terminate()
                child.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--topology", choices=["up", "serve+worker"], default="up")
    arguments = parser.parse_args()
    kind = "slack" if arguments.topology == "up" else "slack-serve"
    slack_port = free_port()
    standin = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "botfactory"),
            "slack",
            "standin",
            "--port",
            str(slack_port),
            "--token",
            "xoxb-bench",
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_for_port(slack_port)
        with tempfile.TemporaryDirectory() as tmp:
            bare = measure("bare", Path(tmp), arguments.rate, arguments.seconds)
            slack_url = f"http://127.0.0.1:{slack_port}"
            slack = measure(kind, Path(tmp), arguments.rate, arguments.seconds, "--slack-url", slack_url)
    finally:
        standin.terminate()
        standin.wait(timeout=30)
    for name, results in (("bare Starlette", bare), ("POST /slack/events", slack)):
        print(
            f"{name:20s} {len(results.latencies):6d} requests at {results.rate:5.0f}/s  statuses {results.statuses}  "
            f"p50 {results.percentile(0.5):6.2f} ms  p99 {results.percentile(0.99):6.2f} ms  "
            f"max {results.percentile(1.0):7.2f} ms"
        )
    print(
        f"Slack ack p99 {slack.percentile(0.99):.1f} ms (goal < 50 ms; Slack allows 3,000 ms) = "
        f"{slack.percentile(0.99) / bare.percentile(0.99):.1f}x the bare endpoint's p99"
    )


if __name__ == "__main__":
    main()
