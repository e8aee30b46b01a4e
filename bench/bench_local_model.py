"""Benchmark a local model served by llama.cpp (xllamacpp) in botfactory's supervised child process.

Measures, against one server in one run:

1. Prompt and generation throughput through ``OpenAIChatModel`` versus raw httpx POSTs of the same
   body, interleaved (alternating which goes first), medians of ``--repeat`` runs. The ratio is
   botfactory's overhead (goal >= 0.95). Wall-clock ratios carry the machine's noise, so the client-side
   overhead per call (wall time minus llama.cpp's own ``timings``) is printed too: it is the robust figure.
2. Time to first token (llama.cpp's ``timings.prompt_ms``) and total latency for a long system prompt,
   cached (same prefix as the previous request) versus uncached (a nonce at the very start of the prompt
   defeats the prefix cache).

Usage: ``python bench/bench_local_model.py [--model NAME] [--models-dir DIR] [--threads 2] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from botfactory.config import default_home
from botfactory.inference.base import ModelRequest
from botfactory.inference.catalogue import get_spec
from botfactory.inference.install import ensure_model_file
from botfactory.inference.local import LOCAL_PROFILE, LocalModelServer
from botfactory.inference.openai import OpenAIChatModel, OpenAIProvider
from botfactory.messages import Message

FILLER = (
    "You are the operations assistant of a mid-sized software company. You answer questions about "
    "deployments, on-call rotations, incident reviews, access requests and vault secrets. Be precise, "
    "cite the runbook section you rely on, never invent hostnames, and ask for approval before any "
    "change to production. "
)
LONG_SYSTEM = FILLER * 9  # ~500 tokens
GEN_TOKENS = 64


class TimingsTap(httpx.AsyncBaseTransport):
    """Records llama.cpp's ``timings`` of the last response passing through (adds a JSON parse: conservative)."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.server_s = 0.0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        body = await response.aread()
        self.server_s = server_seconds(json.loads(body))
        return httpx.Response(response.status_code, headers=response.headers, content=body)

    async def aclose(self) -> None:
        await self.inner.aclose()


def server_seconds(body: dict[str, Any]) -> float:
    timings = body.get("timings") or {}
    return (float(timings.get("prompt_ms", 0.0)) + float(timings.get("predicted_ms", 0.0))) / 1000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def messages(system: str, user: str) -> tuple[Message, ...]:
    return (Message(role="system", content=system), Message(role="user", content=user))


Call = Callable[[ModelRequest], Awaitable[tuple[int, int, float]]]


async def throughput(
    model: OpenAIChatModel, tap: TimingsTap, raw: httpx.AsyncClient, repeat: int
) -> dict[str, dict[str, tuple[float, ...]]]:
    """Per request kind: median (tokens/s, client overhead in s, server time in s) for each path."""
    samples: dict[str, dict[str, list[tuple[float, float, float]]]] = {
        kind: {"model": [], "raw": []} for kind in ("prompt", "gen")
    }

    async def via_model(request: ModelRequest) -> tuple[int, int, float]:
        response = await model.complete(request)
        return response.usage.input_tokens, response.usage.output_tokens, tap.server_s

    async def via_raw(request: ModelRequest) -> tuple[int, int, float]:
        response = await raw.post("chat/completions", json=model.build_payload(request))
        response.raise_for_status()
        body = response.json()
        return int(body["usage"]["prompt_tokens"]), int(body["usage"]["completion_tokens"]), server_seconds(body)

    paths: list[tuple[str, Call]] = [("model", via_model), ("raw", via_raw)]
    counter = 0
    for n in range(repeat):
        for path, call in paths if n % 2 == 0 else paths[::-1]:
            counter += 1
            # prompt-heavy: a fresh prefix each time so the whole prompt is evaluated; one output token
            prompt_req = ModelRequest(messages=messages(f"Run {counter}. " + LONG_SYSTEM, "Hi"), max_tokens=1)
            started = time.perf_counter()
            prompt_tokens, _, server_s = await call(prompt_req)
            wall = time.perf_counter() - started
            samples["prompt"][path].append((prompt_tokens / wall, wall - server_s, server_s))
            # generation-heavy: short prompt (cached after the first run), fixed number of output tokens
            gen_req = ModelRequest(
                messages=messages("Be verbose.", "Count from one upwards in words."), max_tokens=GEN_TOKENS
            )
            started = time.perf_counter()
            _, completion_tokens, server_s = await call(gen_req)
            wall = time.perf_counter() - started
            samples["gen"][path].append((completion_tokens / wall, wall - server_s, server_s))
    return {
        kind: {
            path: tuple(statistics.median(v[i] for v in values) for i in range(3)) for path, values in by_path.items()
        }
        for kind, by_path in samples.items()
    }


async def cache_latency(model: OpenAIChatModel, raw: httpx.AsyncClient, repeat: int) -> dict[str, dict[str, float]]:
    """Median TTFT (server prompt_ms), total latency and cached tokens, for cached and uncached prefixes."""
    rows: dict[str, dict[str, list[float]]] = {"uncached": {}, "cached": {}}

    async def one(system: str, question: str) -> dict[str, float]:
        request = ModelRequest(messages=messages(system, question), max_tokens=16)
        started = time.perf_counter()
        response = await raw.post("chat/completions", json=model.build_payload(request))
        total = time.perf_counter() - started
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        timings = body.get("timings") or {}
        return {
            "ttft_s": float(timings.get("prompt_ms", float("nan"))) / 1000,
            "total_s": total,
            "prompt_tokens": float(body["usage"]["prompt_tokens"]),
            "cached_tokens": float(timings.get("cache_n", 0)),
        }

    await one(LONG_SYSTEM, "warm up")
    for n in range(repeat):
        for kind, system in (("uncached", f"Ticket {n * 7919 % 10007}. " + LONG_SYSTEM), ("cached", LONG_SYSTEM)):
            if kind == "cached":
                await one(LONG_SYSTEM, "prime")  # the slot now holds LONG_SYSTEM; the next request reuses it
            for key, value in (await one(system, f"Who approves production change number {n}?")).items():
                rows[kind].setdefault(key, []).append(value)
    return {kind: {k: statistics.median(v) for k, v in values.items()} for kind, values in rows.items()}


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct-q4_k_m")
    parser.add_argument("--models-dir", type=Path, default=default_home() / "models")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    load_before = os.getloadavg()[0]
    spec = get_spec(args.model)
    path = ensure_model_file(spec, args.models_dir)
    server = LocalModelServer(path, port=free_port(), context_size=2048, threads=args.threads, start_timeout_s=300)
    started = time.perf_counter()
    await server.start()
    load_s = time.perf_counter() - started
    tap = TimingsTap()
    provider = OpenAIProvider(server.base_url, None, max_retries=0, transport=tap, trust_env=False)
    # the body chat_model() sends, plus ignore_eos for fixed output lengths; both paths send the same body
    model = OpenAIChatModel(
        args.model, provider, profile=LOCAL_PROFILE, extra_body={"cache_prompt": True, "ignore_eos": True}
    )
    try:
        async with httpx.AsyncClient(base_url=server.base_url + "/", timeout=300, trust_env=False) as raw:
            tput = await throughput(model, tap, raw, args.repeat)
            cache = await cache_latency(model, raw, args.repeat)
    finally:
        await model.aclose()
        await server.stop()

    print(f"model: {args.model}  threads: {args.threads}  repeat: {args.repeat}  load+health: {load_s:.1f}s")
    cores = os.cpu_count()
    print(f"machine: {cores} cores, 1-min load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    print()
    print(
        f"{'median':<29}{'tok/s model':>12}{'tok/s raw':>11}{'ratio':>7}"
        f"{'client ms model':>17}{'client ms raw':>15}{'ratio*':>8}"
    )
    for kind, label in (("prompt", "prompt (~500 tok, uncached)"), ("gen", f"generation ({GEN_TOKENS} tok)")):
        (m_tps, m_over, m_server), (r_tps, r_over, r_server) = tput[kind]["model"], tput[kind]["raw"]
        server_s = statistics.median([m_server, r_server])
        derived = (server_s + r_over) / (server_s + m_over)
        print(
            f"{label:<29}{m_tps:>12.1f}{r_tps:>11.1f}{m_tps / r_tps:>7.3f}"
            f"{m_over * 1000:>17.1f}{r_over * 1000:>15.1f}{derived:>8.3f}"
        )
    print("ratio* = throughput ratio from client overhead alone, at the median server time (noise-free)")
    print()
    print(f"{'long system prompt':<22}{'prompt tok':>11}{'cached tok':>11}{'TTFT s':>9}{'total s':>9}")
    for kind in ("uncached", "cached"):
        row = cache[kind]
        print(
            f"{kind:<22}{row['prompt_tokens']:>11.0f}{row['cached_tokens']:>11.0f}"
            f"{row['ttft_s']:>9.2f}{row['total_s']:>9.2f}"
        )
    speedup = cache["uncached"]["total_s"] / cache["cached"]["total_s"]
    print(f"\ncache speed-up (total latency, uncached / cached): {speedup:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
