"""Benchmark what botfactory's inference endpoint adds to a call of the local llama.cpp server.

One llama.cpp server (the ``small`` model by default) and one botfactory server (``create_app`` of a platform whose
``small`` alias is that llama.cpp server, served by uvicorn on 127.0.0.1, with the server's usual middleware) run
in this process. The same tiny request (fixed short prompt, ``max_tokens=1``, ``temperature=0``, llama.cpp's
prompt cache on) is sent with one ``httpx`` client, interleaved and alternating which goes first:

- direct: ``POST {llama}/v1/chat/completions``
- botfactory: ``POST {botfactory}/v1/inference/chat/completions`` (platform-level: no bot, no store access)
- bare proxy: a bare Starlette route on uvicorn forwarding the body to llama.cpp with aiohttp (the client
  botfactory's model provider uses) and the answer back: the floor of a Python proxy hop on this machine
- bare proxy (httpx): the same route forwarding with ``httpx``, the client botfactory used before (for comparison)
- metered (``--metered``): the same with ``X-Botfactory-Bot: support``: kill switches and budgets checked, usage
  counted in the store (SQLite)

It prints the p50 (and p90) latency of each path, the p50 added by botfactory (the difference of the medians, and
the median of the per-round differences) and the ratio. Goal: < 1 ms p50 added.

Usage: ``python bench/bench_inference_endpoint.py [--requests 200] [--model NAME] [--threads 2] [--metered]``
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from botfactory.config import Settings, default_home
from botfactory.inference import Inference, LocalModelServer, ensure_model_file, get_spec
from botfactory.server import Platform, create_app

PROMPT = [
    {"role": "system", "content": "You answer with one word."},
    {"role": "user", "content": "Say hello."},
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def timed(client: httpx.AsyncClient, url: str, body: dict[str, Any], headers: dict[str, str]) -> float:
    started = time.perf_counter()
    response = await client.post(url, json=body, headers=headers)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    if response.json()["choices"][0]["message"] is None:
        raise RuntimeError(f"{url} answered without a message")
    return elapsed


def bare_proxy(upstream: str, client: aiohttp.ClientSession) -> Starlette:
    """A route that forwards the body to ``upstream`` with aiohttp and returns its answer, and nothing else."""

    async def forward(request: Request) -> Response:
        body = await request.body()
        async with client.post(upstream, data=body, headers={"content-type": "application/json"}) as answer:
            return Response(await answer.read(), status_code=answer.status, media_type="application/json")

    return Starlette(routes=[Route("/v1/chat/completions", forward, methods=["POST"])])


def bare_httpx_proxy(upstream: str, client: httpx.AsyncClient) -> Starlette:
    """The same route forwarding with ``httpx``."""

    async def forward(request: Request) -> Response:
        answer = await client.post(upstream, content=await request.body(), headers={"content-type": "application/json"})
        return Response(answer.content, status_code=answer.status_code, media_type="application/json")

    return Starlette(routes=[Route("/v1/chat/completions", forward, methods=["POST"])])


async def start_server(app: Starlette) -> tuple[uvicorn.Server, asyncio.Task[None], int]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes only a flag
        await asyncio.sleep(0.02)
    return server, task, port


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct-q4_k_m")
    parser.add_argument("--models-dir", type=Path, default=default_home() / "models")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--requests", type=int, default=200, help="requests per path")
    parser.add_argument("--warmup", type=int, default=10, help="unmeasured requests per path first")
    parser.add_argument("--metered", action="store_true", help="also measure calls made for a bot (store access)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    load_before = os.getloadavg()[0]
    path = ensure_model_file(get_spec(args.model), args.models_dir)
    llama = LocalModelServer(path, port=free_port(), context_size=2048, threads=args.threads, start_timeout_s=300)
    await llama.start()
    home = tempfile.TemporaryDirectory(prefix="bench-inference-")
    settings = Settings.load(home=Path(home.name))
    inference = Inference({"small": llama.chat_model(args.model, max_retries=0)})
    platform = await Platform.start(settings, inference=inference, role="serve")
    proxy_client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
    httpx_proxy_client = httpx.AsyncClient(timeout=60, trust_env=False)
    servers = [
        await start_server(create_app(platform)),
        await start_server(bare_proxy(f"{llama.base_url}/chat/completions", proxy_client)),
        await start_server(bare_httpx_proxy(f"{llama.base_url}/chat/completions", httpx_proxy_client)),
    ]
    port, proxy_port, httpx_proxy_port = (server[2] for server in servers)
    try:
        body = {"messages": PROMPT, "max_tokens": 1, "temperature": 0}
        direct_body = {**body, "model": args.model, "cache_prompt": True}
        paths: list[tuple[str, str, dict[str, Any], dict[str, str]]] = [
            # llama.cpp gets exactly what botfactory's OpenAIChatModel sends it (model name, cache_prompt)
            ("direct", f"{llama.base_url}/chat/completions", direct_body, {}),
            ("botfactory", f"http://127.0.0.1:{port}/v1/inference/chat/completions", {**body, "model": "small"}, {}),
            ("bare proxy", f"http://127.0.0.1:{proxy_port}/v1/chat/completions", direct_body, {}),
            ("bare (httpx)", f"http://127.0.0.1:{httpx_proxy_port}/v1/chat/completions", direct_body, {}),
        ]
        if args.metered:
            paths.append((paths[1][0] + "+bot", paths[1][1], paths[1][2], {"X-Botfactory-Bot": "support"}))
        samples: dict[str, list[float]] = {name: [] for name, *_ in paths}
        async with httpx.AsyncClient(timeout=60, trust_env=False) as client:
            for _ in range(args.warmup):
                for _name, url, payload, headers in paths:
                    await timed(client, url, payload, headers)
            for n in range(args.requests):
                for name, url, payload, headers in paths if n % 2 == 0 else paths[::-1]:
                    samples[name].append(await timed(client, url, payload, headers))
    finally:
        for server, task, _ in servers:
            server.should_exit = True
            await asyncio.wait_for(task, timeout=10)
        await proxy_client.close()
        await httpx_proxy_client.aclose()
        await platform.aclose()
        await inference.aclose()
        await llama.stop()
        home.cleanup()

    direct = samples["direct"]
    p50_direct = statistics.median(direct)
    print(f"model: {args.model}  threads: {args.threads}  requests per path: {args.requests} (+{args.warmup} warm-up)")
    print(
        f"machine: {os.cpu_count()} cores, 1-min load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    )
    print()
    print(f"{'path':<16}{'p50 ms':>9}{'p90 ms':>9}{'added p50 ms':>14}{'median diff ms':>16}{'ratio':>8}")
    for name, values in samples.items():
        p50 = statistics.median(values)
        paired = statistics.median(v - d for v, d in zip(values, direct, strict=True))
        print(
            f"{name:<16}{p50 * 1000:>9.2f}{percentile(values, 0.9) * 1000:>9.2f}{(p50 - p50_direct) * 1000:>14.2f}"
            f"{paired * 1000:>16.2f}{p50 / p50_direct:>8.3f}"
        )
    print("added p50 = p50(path) - p50(direct); median diff = median of per-round (path - direct) differences")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
