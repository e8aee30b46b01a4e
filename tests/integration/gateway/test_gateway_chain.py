"""The gateway's chain on a real store: validate -> policy -> credentials -> execute with a timeout -> audit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.audit_rows import make_audit_row

from botfactory.config import RateLimitConfig, RateLimitSettings
from botfactory.errors import (
    CredentialError,
    CredentialRejectedError,
    ToolArgumentsError,
    ToolDeniedError,
    ToolError,
    ToolRateLimitedError,
    ToolTimeoutError,
)
from botfactory.gateway import (
    CallContext,
    CredentialRef,
    Gateway,
    GatewayCall,
    MemoryRateLimiter,
    PolicyEngine,
    PolicySession,
    PolicyUser,
    SideEffect,
)
from botfactory.observability import AuditLog
from botfactory.store import AuditQuery, AuditRecord, AuditStore, BatchWriter, Store

pytestmark = pytest.mark.integration

SECRET = "s3cr3t-canary-value-9f2"


@dataclass(kw_only=True)
class FakeTool:
    """A GatewayTool whose behaviour each test sets."""

    name: str = "lookup"
    description: str = "Look something up."
    parameters: dict[str, Any] = field(
        default_factory=lambda: {
            "type": "object",
            "properties": {"query": {"type": "string"}, "org": {"type": "string"}},
            "required": ["query"],
            "additionalProperties": False,
        }
    )
    side_effect: SideEffect = "read"
    timeout_s: float | None = 5.0
    credentials: Sequence[CredentialRef] = ()
    needs_approval: bool = False
    owner: str = "team-a"
    sleep_s: float = 0.0
    echo_credentials: bool = False
    fail: Exception | None = None
    calls: list[CallContext] = field(default_factory=list)

    async def invoke(self, arguments: dict[str, Any], context: CallContext) -> Any:
        self.calls.append(context)
        if self.sleep_s:
            await asyncio.sleep(self.sleep_s)
        if self.fail is not None:
            raise self.fail
        if self.echo_credentials:
            return {"seen": dict(context.credentials)}
        return f"found {arguments['query']}"


class StaticCredentials:
    """A credential provider holding one platform secret, counting lookups."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.asked: list[tuple[str, str | None]] = []

    async def resolve(self, refs: Sequence[CredentialRef], *, user_id: str | None) -> dict[str, str]:
        resolved = {}
        for ref in refs:
            self.asked.append((ref.source, user_id))
            if ref.source not in self.values:
                raise CredentialError(f"no secret {ref.source}; set it with `botfactory secrets set {ref.source}`")
            resolved[ref.name] = self.values[ref.source]
        return resolved


@pytest.fixture(params=["engine", "writer"])
async def audit(database_url: str, request: pytest.FixtureRequest) -> AsyncIterator[AuditLog]:
    """The audit log writing through the store's engine, and through a runtime writer as on the platform."""
    async with await Store.open(database_url) as store:
        log = AuditLog(AuditStore(store.engine), flush_s=0.01)
        writer = BatchWriter(database_url) if request.param == "writer" else None
        log.write_through(writer)
        try:
            yield log
        finally:
            await log.aclose()
            if writer is not None:
                await writer.close()


def policies(tmp_path: Path, text: str = "", *, mode: str = "enforce") -> PolicyEngine:
    folder = tmp_path / "bot-policies"
    folder.mkdir(exist_ok=True)
    if text:
        (folder / "rules.cedar").write_text(text)
    return PolicyEngine.load(
        global_dir=None, bot_dirs={"helper": folder}, modes={"helper": mode}, argument_types={"org": "String"}
    )


def request(tool: FakeTool, *, user: str | None = "slack:T1:U1", **arguments: Any) -> GatewayCall:
    return GatewayCall(
        bot="helper",
        agent_path="helper/search",
        tool=tool,
        arguments=arguments or {"query": "vault"},
        granted={tool.name},
        session=PolicySession(id="s1", channel="C1"),
        turn_id="t1",
        idempotency_key="t1:3",
        user=PolicyUser(id=user) if user else None,
        position=3,
    )


async def only_row(audit: AuditLog) -> Any:
    rows = await audit.list(AuditQuery(session_id="s1"))
    assert len(rows) == 1
    return rows[0]


async def test_an_allowed_call_runs_and_is_audited(audit: AuditLog, tmp_path: Path) -> None:
    tool = FakeTool()
    gateway = Gateway(policies=policies(tmp_path), audit=audit)
    assert await gateway.call(request(tool, query="vault")) == "found vault"
    assert tool.calls[0].idempotency_key == "t1:3" and tool.calls[0].user_id == "slack:T1:U1"
    row = await only_row(audit)
    assert (row.decision, row.outcome, row.reasons) == ("allow", "ok", ("platform:grant",))
    assert (row.principal, row.bot, row.agent_path, row.tool, row.position) == (
        "slack:T1:U1",
        "helper",
        "helper/search",
        "lookup",
        3,
    )
    assert row.arguments == {"query": "vault"}
    assert row.duration_ms > 0


async def test_a_forbidden_call_never_runs(audit: AuditLog, tmp_path: Path) -> None:
    tool = FakeTool()
    rule = '@id("acme-only")\nforbid(principal, action, resource) when { context.arguments has org && context.arguments.org != "acme" };'
    gateway = Gateway(policies=policies(tmp_path, rule), audit=audit)
    with pytest.raises(ToolDeniedError, match="denied by policy rules:acme-only"):
        await gateway.call(request(tool, query="x", org="evil"))
    assert tool.calls == []
    row = await only_row(audit)
    assert (row.decision, row.outcome, row.reasons) == ("deny", "denied", ("rules:acme-only",))


async def test_log_only_mode_records_would_deny_and_runs(audit: AuditLog, tmp_path: Path) -> None:
    tool = FakeTool()
    rule = "forbid(principal, action, resource);"
    gateway = Gateway(policies=policies(tmp_path, rule, mode="log-only"), audit=audit)
    assert await gateway.call(request(tool, query="x")) == "found x"
    row = await only_row(audit)
    assert (row.decision, row.outcome) == ("would-deny", "ok")


async def test_schema_violations_are_rejected_before_any_policy(audit: AuditLog, tmp_path: Path) -> None:
    tool = FakeTool()
    gateway = Gateway(policies=policies(tmp_path), audit=audit)
    with pytest.raises(ToolArgumentsError, match="query: 5 is not of type 'string'"):
        await gateway.call(request(tool, query=5))
    row = await only_row(audit)
    assert (row.decision, row.outcome) == ("invalid", "rejected")
    assert tool.calls == []


async def test_without_policies_only_granted_tools_run(audit: AuditLog) -> None:
    tool = FakeTool()
    call = request(tool)
    ungranted = GatewayCall(**{**call.__dict__, "granted": frozenset()})
    with pytest.raises(ToolDeniedError, match="not granted"):
        await Gateway(audit=audit).call(ungranted)
    assert tool.calls == []


async def test_a_slow_tool_is_stopped_at_its_timeout(audit: AuditLog, tmp_path: Path) -> None:
    tool = FakeTool(timeout_s=0.2, sleep_s=5)
    gateway = Gateway(policies=policies(tmp_path), audit=audit)
    started = asyncio.get_running_loop().time()
    with pytest.raises(ToolTimeoutError, match=r"did not finish within 0\.2 s"):
        await gateway.call(request(tool))
    assert asyncio.get_running_loop().time() - started < 2
    assert (await only_row(audit)).outcome == "timeout"


async def test_credentials_reach_the_tool_and_nothing_else(audit: AuditLog, tmp_path: Path) -> None:
    tool = FakeTool(credentials=[CredentialRef(name="api", secret="lookup_token")], echo_credentials=True)
    provider = StaticCredentials({"lookup_token": SECRET})
    gateway = Gateway(policies=policies(tmp_path), credentials=provider, audit=audit)
    result = await gateway.call(request(tool, query=f"find {SECRET}"))
    assert tool.calls[0].credentials == {"api": SECRET}  # the tool got it
    assert SECRET not in str(result)  # echoed back: scrubbed before the model sees it
    assert provider.asked == [("lookup_token", "slack:T1:U1")]
    row = await only_row(audit)
    assert SECRET not in str(row.to_dict())
    assert row.arguments == {"query": "find ***"}


async def test_a_missing_credential_fails_the_call_clearly(audit: AuditLog, tmp_path: Path) -> None:
    tool = FakeTool(credentials=[CredentialRef(name="api", secret="absent")])
    gateway = Gateway(policies=policies(tmp_path), credentials=StaticCredentials({}), audit=audit)
    with pytest.raises(CredentialError, match="botfactory secrets set absent"):
        await gateway.call(request(tool))
    assert tool.calls == []
    assert (await only_row(audit)).outcome == "credential_error"
    with pytest.raises(CredentialError, match="no credential provider"):
        await Gateway(policies=policies(tmp_path)).call(request(tool))


async def test_a_tool_error_is_audited_with_the_secret_masked(audit: AuditLog, tmp_path: Path) -> None:
    tool = FakeTool(credentials=[CredentialRef(name="api", secret="t")], fail=ToolError(f"upstream refused {SECRET}"))
    gateway = Gateway(policies=policies(tmp_path), credentials=StaticCredentials({"t": SECRET}), audit=audit)
    with pytest.raises(ToolError) as raised:
        await gateway.call(request(tool))
    assert raised.value.message == "upstream refused ***"
    row = await only_row(audit)
    assert (row.outcome, row.error) == ("error", "upstream refused ***")


async def test_sensitive_argument_names_are_masked_in_the_audit(audit: AuditLog, tmp_path: Path) -> None:
    tool = FakeTool(
        parameters={"type": "object", "properties": {"query": {"type": "string"}, "password": {"type": "string"}}}
    )
    await Gateway(policies=policies(tmp_path), audit=audit).call(request(tool, query="q", password="hunter2"))
    assert (await only_row(audit)).arguments == {"query": "q", "password": "***"}


async def test_a_tool_that_needs_approval_is_refused_until_approvals_exist(audit: AuditLog, tmp_path: Path) -> None:
    tool = FakeTool(needs_approval=True)
    with pytest.raises(ToolDeniedError, match="needs a person's approval"):
        await Gateway(policies=policies(tmp_path), audit=audit).call(request(tool))
    assert tool.calls == []
    assert (await only_row(audit)).approval == "unavailable"


async def test_audit_pages_newest_first_and_filters(audit: AuditLog, tmp_path: Path) -> None:
    gateway = Gateway(policies=policies(tmp_path), audit=audit)
    for i in range(5):
        await gateway.call(request(FakeTool(), user=f"u{i % 2}", query=str(i)))
    first = await audit.list(AuditQuery(limit=2))
    assert [r.arguments["query"] for r in first] == ["4", "3"]
    rest = await audit.list(AuditQuery(limit=10, before=first[-1].id))
    assert [r.arguments["query"] for r in rest] == ["2", "1", "0"]
    assert [r.arguments["query"] for r in await audit.list(AuditQuery(principal="u1"))] == ["3", "1"]


async def test_a_call_over_the_rate_limit_is_refused_with_when_to_retry(audit: AuditLog, tmp_path: Path) -> None:
    tool = FakeTool()
    limits = RateLimitSettings(tools={"lookup": RateLimitConfig(per_minute=1, burst=2)})
    gateway = Gateway(policies=policies(tmp_path), rate_limiter=MemoryRateLimiter(), rate_limits=limits, audit=audit)
    assert await gateway.call(request(tool, query="a")) == "found a"
    assert await gateway.call(request(tool, query="b")) == "found b"
    with pytest.raises(ToolRateLimitedError, match=r"rate limit of tool lookup reached; try again in \d+ s") as raised:
        await gateway.call(request(tool, query="c"))
    assert 0 < raised.value.retry_after_s <= 60
    assert len(tool.calls) == 2
    rows = await audit.list(AuditQuery(session_id="s1"))
    assert [r.outcome for r in rows] == ["rate_limited", "ok", "ok"]


async def test_per_user_buckets_do_not_share_tokens(audit: AuditLog, tmp_path: Path) -> None:
    limits = RateLimitSettings(per_user=RateLimitConfig(per_minute=1, burst=1))
    gateway = Gateway(policies=policies(tmp_path), rate_limiter=MemoryRateLimiter(), rate_limits=limits, audit=audit)
    assert await gateway.call(request(FakeTool(), user="alice"))
    assert await gateway.call(request(FakeTool(), user="bob"))
    with pytest.raises(ToolRateLimitedError):
        await gateway.call(request(FakeTool(), user="alice"))


class RotatingCredentials(StaticCredentials):
    """An OAuth-like provider: ``forget`` drops the current token, and the next resolve hands out a new one."""

    def __init__(self, tokens: list[str], *, renews: bool = True) -> None:
        super().__init__({"crm": tokens[0]})
        self.tokens = tokens
        self.renews = renews
        self.forgotten: list[dict[str, str]] = []

    def forget(self, refs: Sequence[CredentialRef], values: Mapping[str, str], *, user_id: str | None) -> bool:
        self.forgotten.append(dict(values))
        if not self.renews:
            return False
        self.values["crm"] = self.tokens[len(self.forgotten)]
        return True


@dataclass(kw_only=True)
class AcceptsOnly(FakeTool):
    """A tool whose service accepts only one token, answering 401 (as an OpenAPI tool reports it) to the others."""

    valid: str = ""

    async def invoke(self, arguments: dict[str, Any], context: CallContext) -> Any:
        self.calls.append(context)
        if context.credentials["api"] != self.valid:
            raise CredentialRejectedError(f"lookup answered HTTP 401 for token {context.credentials['api']}")
        return {"echo": context.credentials["api"]}


async def test_a_refused_token_is_forgotten_and_the_call_retried_once_with_a_fresh_one(
    audit: AuditLog, tmp_path: Path
) -> None:
    old, new = f"old-{SECRET}", f"new-{SECRET}"
    tool = AcceptsOnly(credentials=[CredentialRef(name="api", kind="oauth_client", secret="crm")], valid=new)
    provider = RotatingCredentials([old, new])
    gateway = Gateway(policies=policies(tmp_path), credentials=provider, audit=audit)

    result = await gateway.call(request(tool))

    assert [c.credentials["api"] for c in tool.calls] == [old, new]
    assert provider.forgotten == [{"api": old}]
    assert new not in str(result)  # the fresh token is scrubbed like the first
    row = await only_row(audit)
    assert (row.outcome, row.error) == ("ok", None)


async def test_a_refused_credential_that_cannot_be_renewed_fails_once_with_credential_rejected(
    audit: AuditLog, tmp_path: Path
) -> None:
    tool = AcceptsOnly(credentials=[CredentialRef(name="api", secret="crm")], valid="never")
    gateway = Gateway(policies=policies(tmp_path), credentials=RotatingCredentials([SECRET], renews=False), audit=audit)

    with pytest.raises(CredentialRejectedError) as caught:
        await gateway.call(request(tool))

    assert len(tool.calls) == 1  # no retry with the same value
    assert SECRET not in caught.value.message
    row = await only_row(audit)
    assert row.outcome == "credential_rejected"
    assert SECRET not in (row.error or "")


async def test_an_httpx_401_from_a_python_tool_counts_as_a_refused_credential(audit: AuditLog, tmp_path: Path) -> None:
    refused = httpx.HTTPStatusError(
        "401 Unauthorized",
        request=httpx.Request("GET", "https://crm.example.com/v1/contacts"),
        response=httpx.Response(401),
    )
    tool = FakeTool(credentials=[CredentialRef(name="api", secret="crm")], fail=refused)
    gateway = Gateway(policies=policies(tmp_path), credentials=StaticCredentials({"crm": SECRET}), audit=audit)

    with pytest.raises(CredentialRejectedError, match=r"GET /v1/contacts answered HTTP 401"):
        await gateway.call(request(tool))
    assert (await only_row(audit)).outcome == "credential_rejected"


def audit_row(tool: str) -> AuditRecord:
    """A plain allowed-call row of session ``s1``, with a fresh id."""
    return make_audit_row(bot="helper", agent_path="helper", tool=tool)


def broken_row() -> AuditRecord:
    raise ValueError("a bug in making the row")


async def test_a_row_that_cannot_be_made_is_dropped_and_counted_without_losing_the_others(audit: AuditLog) -> None:
    audit.record_later("a", lambda: audit_row("a"))
    audit.record_later("bb", broken_row)
    audit.record(audit_row("ccc"))
    rows = await audit.list(AuditQuery(session_id="s1"))
    assert sorted(r.tool for r in rows) == ["a", "ccc"]
    assert audit.dropped == 1


async def test_a_write_that_fails_is_retried_with_the_same_rows_and_no_row_made_twice(
    audit: AuditLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[str] = []

    def row() -> AuditRecord:
        made.append("row")
        return audit_row("lookup")

    real = AuditStore.insert_on
    failures = [RuntimeError("the database went away for a moment")]

    def flaky(connection: Any, records: Any) -> None:
        if failures:
            raise failures.pop()
        real(connection, records)

    monkeypatch.setattr(AuditStore, "insert_on", staticmethod(flaky))
    audit.record_later("lookup", row)
    audit.record_later("lookup", broken_row)
    with pytest.raises(Exception, match="went away"):
        await audit.flush()
    rows = await audit.list(AuditQuery(session_id="s1"))  # the retry
    assert len(rows) == 1 and made == ["row"]  # made once, written once
    assert audit.dropped == 1  # the broken row counted once, not once per attempt
