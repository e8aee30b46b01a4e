"""A tool a ``tool_errors`` alert throttled is refused by the gateway with a message the model can act on, the
audit log says ``throttled``, and calls go through again once the throttle ends (injected clock, real store)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from botfactory.errors import ToolThrottledError
from botfactory.gateway import CallContext, Gateway, GatewayCall, PolicySession, SideEffect
from botfactory.observability import AuditLog, ThrottleCache
from botfactory.store import AuditQuery, AuditStore, Store, ThrottleStore

pytestmark = pytest.mark.integration

NOON: float = dt.datetime(2025, 3, 10, 12, 0, tzinfo=dt.UTC).timestamp()


class Clock:
    def __init__(self) -> None:
        self.now = NOON

    def __call__(self) -> float:
        return self.now


@dataclass(kw_only=True)
class Lookup:
    name: str = "lookup"
    description: str = "Look something up."
    parameters: dict[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}
    )
    side_effect: SideEffect = "read"
    timeout_s: float | None = 5.0
    credentials: tuple[Any, ...] = ()
    needs_approval: bool = False
    owner: str = "team-a"
    calls: int = 0

    async def invoke(self, arguments: dict[str, Any], context: CallContext) -> Any:
        self.calls += 1
        return f"found {arguments['query']}"


@dataclass
class Rig:
    gateway: Gateway
    throttles: ThrottleStore
    audit: AuditLog
    clock: Clock


@pytest.fixture
async def rig(database_url: str) -> AsyncIterator[Rig]:
    clock = Clock()
    async with await Store.open(database_url) as store:
        audit = AuditLog(AuditStore(store.engine), flush_s=0.01)
        throttles = ThrottleStore(store.engine, clock=clock)
        gateway = Gateway(audit=audit, clock=clock)
        gateway.throttles = ThrottleCache(throttles, ttl_s=5.0, clock=clock)
        try:
            yield Rig(gateway=gateway, throttles=throttles, audit=audit, clock=clock)
        finally:
            await audit.aclose()


def request(tool: Lookup) -> GatewayCall:
    return GatewayCall(
        bot="helper",
        agent_path="helper",
        tool=tool,
        arguments={"query": "vault"},
        granted={tool.name},
        session=PolicySession(id="s1", channel="api"),
        turn_id="t1",
        idempotency_key="t1:1",
    )


async def test_a_throttled_tool_is_refused_and_audited_then_works_after_until(rig: Rig) -> None:
    tool = Lookup()
    assert await rig.gateway.call(request(tool)) == "found vault"  # the cache has read: nothing throttled

    await rig.throttles.throttle(
        "lookup", NOON + 600, "its error rate was 80% (8 of 10 calls failed) over the last 5 min"
    )
    rig.clock.now += 5  # a throttle set by another process's evaluator is seen within the cache's 5 s

    with pytest.raises(ToolThrottledError) as refused:
        await rig.gateway.call(request(tool))
    assert refused.value.message == (
        "tool lookup is throttled until 12:10 UTC because its error rate was 80% (8 of 10 calls failed) over the "
        "last 5 min; do without it or tell the user it is unavailable for now"
    )
    assert refused.value.retry_after_s == pytest.approx(595)
    assert tool.calls == 1  # the tool itself was not called

    rows = await rig.audit.list(AuditQuery(tool="lookup"))
    assert [r.outcome for r in rows] == ["throttled", "ok"]
    assert rows[0].error is not None and "throttled until 12:10 UTC" in rows[0].error

    rig.clock.now = NOON + 600  # the throttle ends
    assert await rig.gateway.call(request(tool)) == "found vault"
    assert tool.calls == 2
    assert [r.outcome for r in await rig.audit.list(AuditQuery(tool="lookup"))] == ["ok", "throttled", "ok"]


async def test_other_tools_are_not_throttled(rig: Rig) -> None:
    await rig.throttles.throttle("lookup", NOON + 600, "its error rate was 100%")
    other = Lookup(name="search")
    assert await rig.gateway.call(request(other)) == "found vault"
