"""Benchmark a local model served by llama.cpp (xllamacpp) in botfactory's supervised child process.

Measures, against one server in one run:

1. Prompt and generation throughput through ``OpenAIChatModel`` versus raw httpx POSTs of the same
   body, interleaved, medians of ``--repeat`` runs. The ratio is botfactory's overhead (goal >= 0.95).
2. Time to first token (llama.cpp's ``timings.prompt_ms``) and total latency for a long system prompt,
   cached (same prefix as the previous request) versus uncached (a nonce at the very start of the prompt
   defeats the prefix cache).

Usage: ``python bench/bench_local_model.py [--model NAME] [--models-dir DIR] [--threads 2] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import asyncio
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
from botfactory.inference.local import LocalModelServer
from botfactory.inference.openai import OpenAIChatModel
from botfactory.messages import Message

FILLER = (
    "You are the operations assistant of a mid-sized software company. You answer questions about "
    "deployments, on-call rotations, incident reviews, access requests and vault secrets. Be precise, "
    "cite the runbook section you rely on, never invent hostnames, and ask for approval before any "
    "change to production. "
)
LONG_SYSTEM = FILLER * 9  # ~500 tokens
GEN_TOKENS = 64


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def messages(system: str, user: str) -> tuple[Message, ...]:
    return (Message(role="system", content=system), Message(role="user", content=user))


async def timed(
    call: Callable[[ModelRequest], Awaitable[tuple[int, int]]], request: ModelRequest
) -> tuple[float, int, int]:
    started = time.perf_counter()
    prompt_tokens, completion_tokens = await call(request)
    return time.perf_counter() - started, prompt_tokens, completion_tokens


async def throughput(model: OpenAIChatModel, raw: httpx.AsyncClient, repeat: int) -> dict[str, tuple[float, float]]:
    """Median tokens/s per path for a prompt-heavy and a generation-heavy request."""
    results: dict[str, dict[str, list[float]]] = {"prompt": {"model": [], "raw": []}, "gen": {"model": [], "raw": []}}
    counter = 0

    async def via_model(request: ModelRequest) -> tuple[int, int]:
        response = await model.complete(request)
        return response.usage.input_tokens, response.usage.output_tokens

    async def via_raw(request: ModelRequest) -> tuple[int, int]:
        response = await raw.post("chat/completions", json=model.build_payload(request))
        response.raise_for_status()
        usage = response.json()["usage"]
        return int(usage["prompt_tokens"]), int(usage["completion_tokens"])

    for _ in range(repeat):
        for path, call in (("model", via_model), ("raw", via_raw)):
            counter += 1
            # prompt-heavy: a fresh prefix each time so the whole prompt is evaluated; one output token
            prompt_req = ModelRequest(messages=messages(f"Run {counter}. " + LONG_SYSTEM, "Hi"), max_tokens=1)
            wall, prompt_tokens, _ = await timed(call, prompt_req)
            results["prompt"][path].append(prompt_tokens / wall)
            # generation-heavy: short prompt (cached after the first run), fixed number of output tokens
            gen_req = ModelRequest(
                messages=messages("Be verbose.", "Count from one upwards in words."), max_tokens=GEN_TOKENS
            )
            wall, _, completion_tokens = await timed(call, gen_req)
            results["gen"][path].append(completion_tokens / wall)
    return {kind: (statistics.median(v["model"]), statistics.median(v["raw"])) for kind, v in results.items()}


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
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    load_before = os.getloadavg()[0]
    spec = get_spec(args.model)
    path = ensure_model_file(spec, args.models_dir)
    server = LocalModelServer(path, port=free_port(), context_size=2048, threads=args.threads, start_timeout_s=300)
    started = time.perf_counter()
    await server.start()
    load_s = time.perf_counter() - started
    model = server.chat_model(args.model)
    model.extra_body["ignore_eos"] = True  # fixed output lengths; both paths send the same body
    try:
        async with httpx.AsyncClient(base_url=server.base_url + "/", timeout=300, trust_env=False) as raw:
            tput = await throughput(model, raw, args.repeat)
            cache = await cache_latency(model, raw, args.repeat)
    finally:
        await model.aclose()
        await server.stop()

    print(f"model: {args.model}  threads: {args.threads}  repeat: {args.repeat}  load+health: {load_s:.1f}s")
    cores = os.cpu_count()
    print(f"machine: {cores} cores, 1-min load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    print()
    print(f"{'throughput (tok/s, median)':<30}{'OpenAIChatModel':>16}{'raw httpx':>12}{'ratio':>8}")
    for kind, label in (("prompt", "prompt (~500 tok, uncached)"), ("gen", f"generation ({GEN_TOKENS} tok)")):
        via_model, via_raw = tput[kind]
        print(f"{label:<30}{via_model:>16.1f}{via_raw:>12.1f}{via_model / via_raw:>8.3f}")
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
