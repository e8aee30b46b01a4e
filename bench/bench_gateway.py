"""Gateway overhead: one MCP tool call through the whole gateway chain vs the same call made directly.

Baseline (same run): the official ``mcp`` client's ``ClientSession.call_tool("echo")`` on the demo MCP server over
stdio (``python -m botfactory.testing.mcp_demo``), one call at a time. Measured: the same tool of the same server
through ``Gateway.call`` with every step on — JSON-schema validation, Cedar with 10 pre-parsed policies, a rate
limit (per tool, per bot and per user), a credential resolved from the real vault, the timeout, the audit row
(written to SQLite in batches joining a runtime writer's transactions, as on the platform) — and the call itself
through botfactory's MCP client. The two run interleaved in pairs (one direct call, then one through the gateway)
so machine noise hits both alike; each limiter's figure is the ratio of the medians of its own pairs.

The rate limiter is the part whose cost depends on where buckets live; the run reports the ratio with the
in-process limiter, with the database's (SQLite; each take joins the runtime writer's transactions, as on the
platform) and, when Redis answers on 127.0.0.1:6379, with Redis.

    .venv/bin/python bench/bench_gateway.py [--calls N] [--rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcp import ClientSession, StdioServerParameters, stdio_client

from botfactory.config import RateLimitConfig, RateLimitSettings
from botfactory.gateway import (
    CallContext,
    CredentialRef,
    Gateway,
    GatewayCall,
    GatewayTool,
    McpServer,
    MemoryRateLimiter,
    PolicyEngine,
    PolicySession,
    PolicyUser,
    RateLimiter,
    RedisRateLimiter,
    SideEffect,
    StoreRateLimiter,
)
from botfactory.identity import Credentials, MasterKey, Vault
from botfactory.observability import AuditLog
from botfactory.store import AuditStore, BatchWriter, SecretStore, Store

DEMO = [sys.executable, "-m", "botfactory.testing.mcp_demo", "--transport", "stdio"]
POLICIES = (
    "\n".join(
        f'@id("p{i}")\nforbid(principal, action, resource == Tool::"other_{i}") '
        f'when {{ context.arguments has text && context.arguments.text == "x{i}" }};'
        for i in range(9)
    )
    + '\n@id("no-secrets")\nforbid(principal, action, resource) when { context.arguments has text && context.arguments.text == "secret" };\n'
)
LIMITS = RateLimitSettings(
    tools={"echo": RateLimitConfig(per_minute=10_000_000)},
    bots={"bench": RateLimitConfig(per_minute=10_000_000)},
    per_user=RateLimitConfig(per_minute=10_000_000),
)


@dataclass(frozen=True)
class WithCredential:
    """The MCP tool, declaring a vault credential so the gateway's credential step runs."""

    inner: GatewayTool
    credentials: Sequence[CredentialRef] = (CredentialRef(name="api", secret="bench_token"),)

    name = property(lambda self: self.inner.name)
    description = property(lambda self: self.inner.description)
    parameters = property(lambda self: self.inner.parameters)
    owner = property(lambda self: self.inner.owner)
    needs_approval = property(lambda self: self.inner.needs_approval)
    timeout_s = property(lambda self: self.inner.timeout_s)

    @property
    def side_effect(self) -> SideEffect:
        return self.inner.side_effect

    async def invoke(self, arguments: dict[str, Any], context: CallContext) -> Any:
        return await self.inner.invoke(arguments, context)


async def paired(
    direct: Callable[[], Awaitable[Any]], through: Callable[[], Awaitable[Any]], calls: int
) -> tuple[list[float], list[float]]:
    """``calls`` pairs of one direct call and one gateway call, timed one by one: noise from the rest of the machine
    (seconds-long on a shared host) falls on both paths alike."""
    direct_samples, through_samples = [], []
    for _ in range(calls):
        for call, samples in ((direct, direct_samples), (through, through_samples)):
            started = time.perf_counter()
            await call()
            samples.append(time.perf_counter() - started)
    return direct_samples, through_samples


async def run(calls: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "policies"
        folder.mkdir()
        (folder / "bench.cedar").write_text(POLICIES)
        policies = PolicyEngine.load(
            global_dir=None, bot_dirs={"bench": folder}, modes={}, argument_types={"text": "String"}
        )
        store = await Store.open(f"sqlite:///{tmp}/bench.db")
        vault = Vault(SecretStore(store.engine), MasterKey.generate())
        await vault.set("bench_token", "bench-secret-value")
        audit = AuditLog(AuditStore(store.engine))
        writer = BatchWriter(f"sqlite:///{tmp}/bench.db")  # as on the platform: rows join the runtime's writes
        audit.write_through(writer)
        server = McpServer("demo", command=DEMO)
        await server.start()
        echo = WithCredential(next(t for t in server.tools if t.name == "echo"))
        in_store = StoreRateLimiter(store.engine)
        in_store.write_through(writer)  # as on the platform: takes join the runtime writer's transactions
        limiters: dict[str, RateLimiter] = {"memory": MemoryRateLimiter(), "sqlite": in_store}
        try:
            redis = RedisRateLimiter("redis://127.0.0.1:6379/0", prefix=f"botfactory:bench:{time.time_ns()}:")
            await redis.take([])
            limiters["redis"] = redis
        except Exception as exc:
            print(f"redis: not measured ({type(exc).__name__})")
        request = GatewayCall(
            bot="bench",
            agent_path="bench",
            tool=echo,
            arguments={"text": "hello"},
            granted={"echo"},
            session=PolicySession(id="bench"),
            turn_id="t",
            idempotency_key="t:1",
            user=PolicyUser(id="u1"),
        )
        gateways = {
            name: Gateway(
                policies=policies,
                rate_limiter=limiter,
                rate_limits=LIMITS,
                credentials=Credentials(vault),
                audit=audit,
            )
            for name, limiter in limiters.items()
        }
        params = StdioServerParameters(command=DEMO[0], args=DEMO[1:])
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()

            async def direct() -> Any:
                return await session.call_tool("echo", {"text": "hello"})

            samples: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in gateways}
            for _ in range(3):  # warm both paths
                await direct()
                for gateway in gateways.values():
                    await gateway.call(request)
            for _ in range(rounds):
                for name, gateway in gateways.items():
                    pair = await paired(direct, lambda g=gateway: g.call(request), calls)
                    samples[name][0].extend(pair[0])
                    samples[name][1].extend(pair[1])
        await audit.aclose()
        await writer.close()
        await server.aclose()
        for limiter in limiters.values():
            await limiter.aclose()
        await store.close()
    for name, (direct_samples, through_samples) in samples.items():
        base, p50 = statistics.median(direct_samples), statistics.median(through_samples)
        print(
            f"{name} rate limiter: direct p50 {base * 1000:.3f} ms, through the gateway p50 {p50 * 1000:.3f} ms "
            f"(+{(p50 - base) * 1000:.3f} ms), ratio {p50 / base:.2f}x (goal <= 1.2x), {len(direct_samples)} pairs"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="calls per path per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(run(args.calls, args.rounds))


if __name__ == "__main__":
    main()
