"""Ingress throughput: ``POST /v1/bots/{bot}/sessions/{id}/messages`` against a bare Starlette endpoint.

Both are served by uvicorn (one process, as ``botfactory serve`` runs) in a subprocess, loaded from this
process by the same keep-alive client with the same number of connections, one after the other, then again in
the opposite order. botfactory's request does everything a real one does: trace span, API-key check, JSON
validation, the durable inbox write (SQLite, group commit) and the answer; no worker runs in the server. A
diagnostic third server replaces the inbox write with a no-op, to separate the HTTP layer's cost from the write's.

    python bench/bench_http_messages.py [--seconds 10] [--connections 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from _load import Results, closed_loop, post

HERE = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start(kind: str, home: Path, *extra: str) -> tuple[subprocess.Popen[str], int, str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(HERE / "http_server.py"), "--app", kind, "--port", str(port), "--home", str(home), *extra],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline().split()
    if not line or line[0] != "ready":
        process.kill()
        raise SystemExit(f"the {kind} server did not start")
    return process, port, line[1] if len(line) > 1 else ""


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(kind: str, home: Path, seconds: float, connections: int) -> tuple[Results, float]:
    """The load run's results and the server's CPU time per request (seconds)."""
    process, port, key = start(kind, home)
    headers = {"Authorization": f"Bearer {key}"} if key else {}

    def make(i: int) -> bytes:
        body = json.dumps({"text": f"message {i}"}).encode()
        return post(f"/v1/bots/echo/sessions/s{i % 1000}/messages", body, headers)

    try:
        asyncio.run(closed_loop(port, make, connections=connections, duration_s=1.0))  # warm-up
        before = cpu_seconds(process.pid)
        results = asyncio.run(closed_loop(port, make, connections=connections, duration_s=seconds))
        return results, (cpu_seconds(process.pid) - before) / max(1, len(results.latencies))
    finally:
        process.terminate()
        process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    arguments = parser.parse_args()
    rates: dict[str, list[float]] = {"bare": [], "messages": [], "messages-nostore": []}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("bare", "messages", "messages-nostore", "messages-nostore", "messages", "bare"):
            results, cpu_per_request = run(kind, Path(tmp), arguments.seconds, arguments.connections)
            bad = {status: n for status, n in results.statuses.items() if status != 202}
            if bad:
                raise SystemExit(f"{kind}: unexpected answers {bad}")
            rates[kind].append(results.rate)
            print(
                f"{kind:16s} {results.rate:8.0f} req/s  p50 {results.percentile(0.5):6.2f} ms  "
                f"p99 {results.percentile(0.99):6.2f} ms  server CPU {cpu_per_request * 1e6:5.0f} us/request",
                flush=True,
            )
    bare, messages, http_only = (sum(rates[kind]) / 2 for kind in ("bare", "messages", "messages-nostore"))
    print(f"POST .../messages: {messages:.0f} req/s = {messages / bare:.2f} of a bare Starlette endpoint ({bare:.0f})")
    print(f"  diagnostic, inbox write replaced by a no-op: {http_only:.0f} req/s = {http_only / bare:.2f}")


if __name__ == "__main__":
    main()
