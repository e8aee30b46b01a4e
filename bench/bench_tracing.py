"""Tracing overhead: durable runtime throughput with tracing on vs off, measured in the same run.

Each mode runs in a fresh child process (OpenTelemetry allows one tracer provider per process), on its own SQLite
file (or, with ``--postgres``, its own new PostgreSQL database), with the same bot: one agent on a zero-latency scripted model that calls one tool, then answers (spans per
turn: inbox wait, turn, invoke_agent, two chat, execute_tool, policy decision). Messages are queued beforehand;
the figure is complete turns per second of one worker process, as in ``bench_runtime.py``.

- ``off``: ``[tracing] store_spans = false`` and no ``otlp_endpoint``: no tracer provider, spans are no-ops.
- ``record``: the tracer provider and botfactory's router, no sink (the cost of recording spans at all).
- ``store``: the span store only (spans batched into the same database).
- ``on``: the span store and the OTLP/HTTP exporter to a local receiver (in the parent process), which decodes
  and counts what it gets.

As ``botfactory worker`` runs, the span store and the export are done by a span process (``[tracing]
export_process``, the default; docs/tracing.md). ``BENCH_SPANS_IN_PROCESS=1`` measures both on the worker's own
threads instead (``export_process = false``); ``BENCH_SPANS_THROUGH_WRITER=1`` measures what ``up`` and ``serve``
do on SQLite: rows written by this process through the runtime's writer, the export by a span process. Spans are
recorded by botfactory's own tracer provider (``[tracing] provider``, the default); ``BENCH_SDK_PROVIDER=1``
records them with the OpenTelemetry SDK's instead.

Modes alternate for ``--rounds`` rounds. Reported per mode: the best run and its ratio to the best ``off`` run, and
the median over rounds of the mode's ratio to the ``off`` run of the same round (the figure the goal is read
from: on a shared machine the speed drifts between rounds more than tracing changes it). The CPU column is the
worker process's own CPU time (all its threads, not the span process) per turn while it drains, in its best run.

    python bench/bench_tracing.py [--sessions 300] [--messages 4] [--concurrency 32] [--rounds 2] [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from botfactory.agents import Agent, Bot, BotRegistry, Engine, tool
from botfactory.config import Settings, TracingSettings
from botfactory.inference import ModelRequest
from botfactory.messages import ToolCall
from botfactory.observability import span_router, start_tracing
from botfactory.runtime import start_runtime
from botfactory.server import freeze_startup_heap
from botfactory.store import SpanStore, Store
from botfactory.testing import ScriptedModel, call, scripted_inference

MODES = ("off", "record", "store", "on")


@tool
def lookup(login: str) -> str:
    """Look a user up.

    Args:
        login: The login.
    """
    return f"{login}: no seat"


def _answer(request: ModelRequest) -> str | ToolCall:
    return call("lookup", login="octocat") if request.messages[-1].role == "user" else "ok"


def _bot(latency_s: float = 0.0) -> tuple[BotRegistry, Engine]:
    model = ScriptedModel([_answer], cycle=True, name="small", latency_s=latency_s)
    agent = Agent(name="bench", instructions="Answer with the tool.", model="small", tools=[lookup])
    return BotRegistry([Bot(name="bench", agent=agent)]), Engine(scripted_inference({"small": model}))


async def child(
    mode: str, url: str, messages: int, sessions: int, concurrency: int, otlp: str, latency_s: float
) -> dict[str, Any]:
    """Queue ``messages``, then time one worker draining them with tracing in ``mode``."""
    settings = Settings.load(database_url=url, runtime={"concurrency": concurrency})
    bots, engine = _bot(latency_s)
    async with await Store.open(url) as store:
        queued = await start_runtime(settings, store=store, engine=engine, bots=bots, run_worker=False, listen=False)
        for start in range(0, messages, 500):
            await asyncio.gather(
                *(
                    queued.runtime.enqueue("bench", session_id=f"s{i % sessions}", text=f"message {i}")
                    for i in range(start, min(messages, start + 500))
                )
            )
        await queued.aclose(grace_s=0)

        # As a worker process runs: spans stored and exported by a span process (see the module docstring).
        in_process = bool(os.environ.get("BENCH_SPANS_IN_PROCESS"))
        through_writer = bool(os.environ.get("BENCH_SPANS_THROUGH_WRITER"))
        tracing = TracingSettings(
            store_spans=mode in ("store", "on"),
            otlp_endpoint=otlp if mode == "on" else None,
            export_process=not in_process,
            provider="sdk" if os.environ.get("BENCH_SDK_PROVIDER") else "botfactory",
        )
        span_process_url = None if in_process or through_writer else url
        export = start_tracing(tracing, store.engine, cleanup=False, span_process_url=span_process_url)
        if mode == "record":
            span_router(provider_kind=tracing.provider)
        stack = await start_runtime(
            settings, store=store, engine=engine, bots=bots, run_worker=True, listen=False, concurrency=concurrency
        )
        assert stack.worker is not None
        freeze_startup_heap()  # as botfactory worker does once started
        if export.store_sink is not None and through_writer:
            export.store_sink.write_through(stack.queue.writer)
        started, cpu_started = time.perf_counter(), time.process_time()
        while stack.worker.stats.turns_finished < messages:  # noqa: ASYNC110 - polling a counter
            await asyncio.sleep(0.005)
        elapsed, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
        if export.store_sink is not None:
            export.store_sink.write_through(None)
        await stack.aclose(grace_s=0)
        flushed_at = time.perf_counter()
        await export.aclose()
        flush_s = time.perf_counter() - flushed_at
        sink = export.store_sink or export.process_sink
        stored = len(await SpanStore(store.engine).for_session("s0")) * sessions if sink else 0
        return {
            "mode": mode,
            "turns_per_s": messages / elapsed,
            "cpu_us_per_turn": cpu_s / messages * 1e6,
            "spans_written": sink.written if sink else 0,
            "spans_dropped": sink.dropped if sink else 0,
            "spans_per_turn_stored": stored / messages if messages else 0,
            "flush_after_s": flush_s,
        }


class _Receiver:
    """A local OTLP/HTTP receiver: decodes each export request and counts its spans."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
        )

        self.spans = 0
        self.requests = 0
        receiver = self
        answer = ExportTraceServiceResponse().SerializeToString()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                request = ExportTraceServiceRequest()
                request.ParseFromString(self.rfile.read(int(self.headers.get("content-length", "0"))))
                receiver.requests += 1
                receiver.spans += sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@contextlib.contextmanager
def _database(directory: str, name: str, postgres: str | None) -> Iterator[str]:
    """A fresh database for one run: a SQLite file in ``directory``, or a new PostgreSQL database (dropped after)."""
    if postgres is None:
        yield f"sqlite:///{Path(directory) / f'{name}.db'}"
        return
    import psycopg
    import sqlalchemy as sa
    from psycopg import sql

    database = f"botfactory_bench_{name.replace('-', '_')}_{secrets.token_hex(4)}"
    with psycopg.connect(postgres, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        try:
            yield sa.make_url(postgres).set(database=database).render_as_string(hide_password=False)
        finally:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(database)))


def main(
    sessions: int, per_session: int, concurrency: int, rounds: int, latency_ms: float, postgres: str | None
) -> None:
    messages = sessions * per_session
    receiver = _Receiver()
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(rounds):
            for mode in MODES:
                with _database(tmp, f"{mode}-{round_}", postgres) as url:
                    argv = [sys.executable, __file__, "--child", mode, "--url", url, "--otlp", receiver.url]
                    argv += ["--sessions", str(sessions), "--messages", str(per_session)]
                    argv += ["--concurrency", str(concurrency), "--model-latency-ms", str(latency_ms)]
                    done = subprocess.run(argv, check=True, capture_output=True, text=True)
                    runs[mode].append(json.loads(done.stdout.strip().splitlines()[-1]))
    receiver.server.shutdown()
    best = {mode: max(results, key=lambda r: r["turns_per_s"]) for mode, results in runs.items()}
    # Each round's modes ran back to back: their ratio to that round's `off` is the least disturbed by the drift.
    ratios = {
        mode: statistics.median(
            r["turns_per_s"] / o["turns_per_s"] for r, o in zip(runs[mode], runs["off"], strict=True)
        )
        for mode in MODES
    }
    off = best["off"]["turns_per_s"]
    print(
        f"messages: {messages} ({sessions} sessions x {per_session}), worker concurrency {concurrency}, {rounds} rounds, "
        f"model latency {latency_ms:g} ms per call; {'PostgreSQL' if postgres else 'SQLite file'}; spans recorded by "
        f"{'the OpenTelemetry SDK' if os.environ.get('BENCH_SDK_PROVIDER') else 'botfactory'}'s tracer provider"
    )
    header = f"{'tracing':<44} {'best turns/s':>12} {'vs off':>7} {'median of rounds':>17} {'CPU µs/turn':>12}"
    print(f"{header} {'spans/turn':>11} {'dropped':>8}")
    labels = {
        "off": "off (no provider)",
        "record": "spans recorded, no sink",
        "store": "span store",
        "on": "span store + OTLP/HTTP to local receiver",
    }
    for mode in MODES:
        r = best[mode]
        print(
            f"{labels[mode]:<44} {r['turns_per_s']:>12.0f} {r['turns_per_s'] / off:>7.3f} {ratios[mode]:>17.3f} "
            f"{r['cpu_us_per_turn']:>12.0f} {r['spans_per_turn_stored']:>11.1f} {r['spans_dropped']:>8d}"
        )
    print(f"OTLP receiver: {receiver.spans} spans in {receiver.requests} requests (all rounds)")
    print(
        f"throughput loss with tracing on: {(1 - ratios['on']) * 100:.1f} % (median of rounds; best vs best "
        f"{(1 - best['on']['turns_per_s'] / off) * 100:.1f} %; goal <= 10 %)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=300)
    parser.add_argument("--messages", type=int, default=4, help="messages per session")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--model-latency-ms",
        type=float,
        default=0.0,
        help="simulated latency of each model call (default 0: worst case)",
    )
    parser.add_argument(
        "--postgres",
        metavar="ADMIN_URL",
        help="run each mode on a new PostgreSQL database made with this URL (e.g. "
        "postgresql://postgres@127.0.0.1:5432/postgres) instead of a SQLite file",
    )
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--otlp", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        total = args.sessions * args.messages
        outcome = asyncio.run(
            child(
                args.child,
                args.url,
                total,
                args.sessions,
                args.concurrency,
                args.otlp,
                args.model_latency_ms / 1000,
            )
        )
        print(json.dumps(outcome))
    else:
        main(args.sessions, args.messages, args.concurrency, args.rounds, args.model_latency_ms, args.postgres)
