"""The gateway every tool call passes, in this order (DESIGN.md §3 "Tool calls"):

0. **throttle**: a tool a ``tool_errors`` alert throttled is refused at once (see docs/alerts.md);
1. **validate** the arguments against the tool's JSON schema (``invalid``: the model is told what is wrong);
2. **authorize** with Cedar: ungranted tools and ``forbid`` policies deny (``log-only`` bots record and go on);
3. **approval** when the tool needs a person's yes;
4. **rate limit**: one token from the tool's, the bot's and the user's buckets, all or none;
5. **credentials** the tool declares are resolved and handed to it, never to the model;
6. **execute** under the tool's timeout;
7. **audit**: one row per call whatever happened, with redacted arguments, and the decision on the trace.

A refusal at any step raises a :class:`~botfactory.errors.ToolError` whose message the engine gives the model as
the tool's result, so the turn goes on. Credential values are scrubbed from the tool's output before the model or
a trace sees it, in case a tool echoes them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol, runtime_checkable

import httpx
from opentelemetry import trace

from botfactory.config import RateLimitSettings
from botfactory.errors import (
    ApprovalPendingError,
    BotfactoryError,
    CredentialError,
    CredentialRejectedError,
    ToolArgumentsError,
    ToolDeniedError,
    ToolError,
    ToolRateLimitedError,
    ToolThrottledError,
    ToolTimeoutError,
    ToolUnavailableError,
)
from botfactory.gateway._validation import ArgumentsValidator
from botfactory.gateway.catalogue import CallContext, CredentialRef, GatewayTool
from botfactory.gateway.policy import Decision, PolicyEngine, PolicyRequest, PolicySession, PolicyTool, PolicyUser
from botfactory.gateway.rate_limit import Bucket, RateLimiter, buckets_for
from botfactory.observability import (
    GEN_AI_CONVERSATION_ID,
    AuditLog,
    Metrics,
    record_span,
    redact,
    redact_text,
    throttled_message,
    tracing_installed,
)
from botfactory.store import ApprovalRecord, AuditRecord, NewApproval, ThrottleRecord, new_id

__all__ = ["ANONYMOUS", "ApprovalRequests", "CredentialProvider", "Gateway", "GatewayCall", "Outcome", "ThrottleCheck"]

logger = logging.getLogger(__name__)
_BUCKETS_CACHED: Final = 4096  # (tool, bot, user) bucket lists kept; the list is rebuilt after the cache is reset

ANONYMOUS: Final = "anonymous"
"""The principal of a call whose channel knows no user."""

Outcome = Literal[
    "ok",
    "error",
    "denied",
    "rejected",
    "rate_limited",
    "timeout",
    "unavailable",
    "credential_error",
    "credential_rejected",
    "approval_pending",
    "throttled",
]
Execute = Callable[[CallContext], Awaitable[Any]]


class CredentialProvider(Protocol):
    """Resolves the credentials a tool declares, for the user a call is made for (see ``identity.Credentials``)."""

    async def resolve(self, refs: Sequence[CredentialRef], *, user_id: str | None) -> dict[str, str]:
        """The value of each credential, by :attr:`CredentialRef.name`.

        Raises:
            CredentialError: one cannot be provided (missing, or the token endpoint refused).
        """
        ...


@runtime_checkable
class ForgetsCredentials(Protocol):
    """A credential provider that can drop what a service refused (``identity.Credentials`` does)."""

    def forget(self, refs: Sequence[CredentialRef], values: Mapping[str, str], *, user_id: str | None) -> bool:
        """Forget the values resolved for ``refs``; whether resolving again may give a new value at once."""
        ...


class ApprovalRequests(Protocol):
    """Where requests for approval are kept (the runtime's store: ``RuntimeStore.approvals``)."""

    async def request(self, new: NewApproval) -> ApprovalRecord:
        """The request for this call: created now, or the one an earlier attempt of the turn created."""
        ...

    async def expire(self, approval_id: str) -> ApprovalRecord:
        """Mark a pending request whose time is up as expired; returns it as stored."""
        ...


class ThrottleCheck(Protocol):
    """Which tools an alert throttled (``observability.ThrottleCache``: a copy re-read every few seconds)."""

    async def check(self, tool: str) -> ThrottleRecord | None:
        """The throttle refusing ``tool`` now, or ``None``."""
        ...


@dataclass(frozen=True, kw_only=True)
class GatewayCall:
    """One tool call to put through the gateway.

    Attributes:
        granted: Names of the tools the calling agent was given; anything else is denied.
        user: Who the call is made for; ``None``: the channel knows no user (``anonymous``).
        position: The call's step position in the turn (for the audit row).
        resources: Per-session objects the tool may keep (see ``ToolContext.resources``).
    """

    bot: str
    agent_path: str
    tool: GatewayTool
    arguments: Mapping[str, Any]
    granted: Collection[str]
    session: PolicySession
    turn_id: str
    idempotency_key: str
    user: PolicyUser | None = None
    position: int | None = None
    resources: dict[str, Any] = field(default_factory=dict)


class Gateway:
    """Validates, authorizes, rate-limits, credentials, executes and audits tool calls.

    Every part is optional, so tests and embedded uses can leave out what they do not need; a missing part
    allows (no policies: every granted tool is allowed; no limiter: no limits; no audit: nothing recorded).

    Args:
        policies: Cedar decisions; ``None`` allows every granted tool.
        rate_limiter: Token buckets shared by the workers; used with ``rate_limits``.
        credentials: Resolves declared credentials; a tool declaring one without a provider fails its call.
        audit: Where each call's row goes.
        metrics: Counts calls, errors and denials for ``GET /metrics``; ``None``: not counted.
        approvals: Where requests for approval are kept; without it, tools that need approval are refused.
        approval_timeout_s: How long a request waits for a decision before the call is "not approved".
        default_timeout_s: Timeout of tools that declare none.
    """

    def __init__(
        self,
        *,
        policies: PolicyEngine | None = None,
        rate_limiter: RateLimiter | None = None,
        rate_limits: RateLimitSettings | None = None,
        credentials: CredentialProvider | None = None,
        audit: AuditLog | None = None,
        metrics: Metrics | None = None,
        approvals: ApprovalRequests | None = None,
        approval_timeout_s: float = 3600.0,
        default_timeout_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.approvals = approvals
        self.approval_timeout_s = approval_timeout_s
        self.policies = policies
        self.rate_limiter = rate_limiter
        self.rate_limits = rate_limits or RateLimitSettings()
        self.credentials = credentials
        self.audit = audit
        self.metrics = metrics
        self.default_timeout_s = default_timeout_s
        self._clock = clock
        self._validators: dict[int, ArgumentsValidator] = {}
        self._buckets: dict[tuple[str, str, str | None], tuple[RateLimitSettings, list[Bucket]]] = {}
        self.throttles: ThrottleCheck | None = None
        """Tools a ``tool_errors`` alert throttled are refused first of all; ``None``: no throttling."""

    async def call(self, call: GatewayCall, execute: Execute | None = None) -> Any:
        """Put one call through every step; return the tool's result (secrets scrubbed from text).

        Args:
            execute: Runs the call instead of ``call.tool.invoke`` (the engine runs sub-agents this way).

        Raises:
            ToolArgumentsError: the arguments do not match the schema.
            ToolDeniedError: a policy (or a missing grant) denied the call.
            ToolRateLimitedError: a bucket is empty.
            CredentialError: a declared credential cannot be provided.
            ToolTimeoutError: the call ran past its timeout.
            ToolError: the tool itself failed.
        """
        started = time.perf_counter()
        tool = call.tool
        arguments = dict(call.arguments)
        audit = _AuditDraft(decision="allow")
        secrets: tuple[str, ...] = ()
        try:
            if self.throttles is not None:
                await self._check_throttle(tool, audit)
            self._validate(tool, arguments, audit)
            deciding = time.time()
            try:
                decision = self._authorize(call, arguments, audit)
            finally:
                _policy_span(call, audit, deciding)
            policy_asks = decision is not None and not decision.effective and decision.needs_approval
            if decision is not None and not decision.effective and not policy_asks:
                audit.outcome = "denied"
                raise ToolDeniedError(decision.message)
            if tool.needs_approval or policy_asks:
                await self._approved(call, arguments, audit)
            await self._take_rate_tokens(call, audit)
            credentials = await self._credentials(call, audit)
            secrets = tuple(credentials.values())
            context = CallContext(
                session_id=call.session.id,
                turn_id=call.turn_id,
                bot=call.bot,
                agent_path=call.agent_path,
                user_id=call.user.id if call.user is not None else None,
                idempotency_key=call.idempotency_key,
                credentials=credentials,
                resources=call.resources,
            )
            try:
                result = await self._execute(tool, arguments, context, execute, audit)
            except CredentialRejectedError:
                if not self._forget(call, credentials, audit):
                    raise
                # A revoked or early-expired OAuth token: one retry with a fresh one (a 401 did nothing).
                credentials = await self._credentials(call, audit)
                secrets = (*secrets, *credentials.values())
                context = dataclasses.replace(context, credentials=credentials)
                result = await self._execute(tool, arguments, context, execute, audit)
            audit.outcome = "ok"
            return _scrub(result, secrets)
        except BotfactoryError as exc:
            if isinstance(exc, ToolError):
                exc.message = redact_text(exc.message, secrets)
                audit.error = exc.message
            if audit.outcome == "ok":
                audit.outcome = "error"
            raise
        except Exception as exc:
            audit.outcome = "error"
            audit.error = redact_text(f"{type(exc).__name__}: {str(exc)[:200]}", secrets)
            raise
        finally:
            self._audit(call, arguments, audit, secrets, time.perf_counter() - started)

    async def _check_throttle(self, tool: GatewayTool, audit: _AuditDraft) -> None:
        assert self.throttles is not None
        throttle = await self.throttles.check(tool.name)
        if throttle is not None:
            audit.outcome = "throttled"
            raise ToolThrottledError(
                throttled_message(tool.name, throttle), retry_after_s=max(0.0, throttle.until - self._clock())
            )

    def _validate(self, tool: GatewayTool, arguments: dict[str, Any], audit: _AuditDraft) -> None:
        validator = self._validators.get(id(tool))
        if validator is None or validator.schema is not tool.parameters:
            validator = self._validators[id(tool)] = ArgumentsValidator(tool.parameters)
        problems = validator.problems(arguments)
        if problems:
            audit.decision = "invalid"
            audit.outcome = "rejected"
            raise ToolArgumentsError(f"invalid arguments for tool '{tool.name}': {'; '.join(problems)}")

    def _authorize(self, call: GatewayCall, arguments: dict[str, Any], audit: _AuditDraft) -> Decision | None:
        if self.policies is None:
            if call.tool.name not in call.granted:
                audit.decision = "deny"
                audit.reasons = ("platform:not-granted",)
                audit.outcome = "denied"
                raise ToolDeniedError(f"tool {call.tool.name} is not granted to agent {call.agent_path}")
            audit.reasons = ("platform:grant",)
            return None
        tool = call.tool
        decision = self.policies.authorize(
            PolicyRequest(
                bot=call.bot,
                agent=call.agent_path,
                user=call.user or PolicyUser(id=ANONYMOUS),
                tool=PolicyTool(
                    name=tool.name, side_effect=tool.side_effect, owner=tool.owner, needs_approval=tool.needs_approval
                ),
                granted=call.granted,
                arguments=arguments,
                session=call.session,
            )
        )
        if decision.allowed:
            audit.decision = "allow"
        elif decision.effective:
            audit.decision = "would-deny"
        else:
            audit.decision = "ask" if decision.needs_approval else "deny"
        audit.reasons = decision.reasons
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attributes(
                {
                    "botfactory.policy.decision": audit.decision,
                    "botfactory.policy.reasons": list(decision.reasons),
                    "botfactory.policy.mode": decision.mode,
                }
            )
        return decision

    async def _approved(self, call: GatewayCall, arguments: dict[str, Any], audit: _AuditDraft) -> None:
        """Go on only with a person's yes: ask (the turn pauses), or find the answer a resumed turn was woken for."""
        tool = call.tool
        if self.approvals is None:
            audit.outcome = "denied"
            audit.approval = "unavailable"
            raise ToolDeniedError(
                f"tool {tool.name} needs a person's approval, and no approval channel is set up here; "
                "tell the user the action needs an administrator"
            )
        request = await self.approvals.request(
            NewApproval(
                call_key=call.idempotency_key,
                session_id=call.session.id,
                turn_id=call.turn_id,
                bot=call.bot,
                agent_path=call.agent_path,
                tool=tool.name,
                arguments=redact(arguments),
                requester=call.user.id if call.user is not None else None,
                expires_at=self._clock() + self.approval_timeout_s,
            )
        )
        if request.status == "pending" and self._clock() >= request.expires_at:
            request = await self.approvals.expire(request.id)
        audit.approval = request.status
        if request.status != "pending":  # the turn was resumed for the decision: the wait is over
            _approval_span(call, request, self._clock())
        if request.status == "approved":
            return
        if request.status == "pending":
            audit.outcome = "approval_pending"
            raise ApprovalPendingError(
                f"tool {tool.name} waits for approval {request.id}",
                approval_id=request.id,
                expires_at=request.expires_at,
            )
        audit.outcome = "denied"
        if request.status == "denied":
            because = f": {request.reason}" if request.reason else ""
            raise ToolDeniedError(f"not approved: {request.decided_by or 'the approver'} denied {tool.name}{because}")
        raise ToolDeniedError(f"not approved: nobody approved {tool.name} in time, so it was not run")

    async def _take_rate_tokens(self, call: GatewayCall, audit: _AuditDraft) -> None:
        if self.rate_limiter is None:
            return
        user_id = call.user.id if call.user is not None else None
        key = (call.tool.name, call.bot, user_id)
        cached = self._buckets.get(key)
        if cached is None or cached[0] is not self.rate_limits:
            if len(self._buckets) >= _BUCKETS_CACHED:
                self._buckets.clear()
            limits = self.rate_limits
            cached = self._buckets[key] = (
                limits,
                buckets_for(limits, tool=call.tool.name, bot=call.bot, user_id=user_id),
            )
        buckets = cached[1]
        if not buckets:
            return
        retry_after = await self.rate_limiter.take(buckets)
        if retry_after > 0:
            audit.outcome = "rate_limited"
            wait = math.ceil(retry_after)
            raise ToolRateLimitedError(
                f"rate limit of tool {call.tool.name} reached; try again in {wait} s or do without it",
                retry_after_s=retry_after,
            )

    async def _credentials(self, call: GatewayCall, audit: _AuditDraft) -> dict[str, str]:
        refs = tuple(call.tool.credentials)
        if not refs:
            return {}
        if self.credentials is None:
            audit.outcome = "credential_error"
            raise CredentialError(
                f"tool {call.tool.name} needs credentials and this gateway has no credential provider; "
                "start the platform with the vault configured"
            )
        try:
            return await self.credentials.resolve(refs, user_id=call.user.id if call.user is not None else None)
        except CredentialError:
            audit.outcome = "credential_error"
            raise

    async def _execute(
        self,
        tool: GatewayTool,
        arguments: dict[str, Any],
        context: CallContext,
        execute: Execute | None,
        audit: _AuditDraft,
    ) -> Any:
        timeout = tool.timeout_s if tool.timeout_s is not None else (None if execute else self.default_timeout_s)
        try:
            async with asyncio.timeout(timeout):
                if execute is not None:
                    return await execute(context)
                return await tool.invoke(arguments, context)
        except TimeoutError:
            audit.outcome = "timeout"
            raise ToolTimeoutError(f"tool {tool.name} did not finish within {timeout:g} s and was stopped") from None
        except ToolTimeoutError:
            audit.outcome = "timeout"
            raise
        except (ToolUnavailableError, ConnectionError):
            audit.outcome = "unavailable"
            raise
        except CredentialRejectedError:
            audit.outcome = "credential_rejected"
            raise
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code != 401 or not tool.credentials:
                raise
            audit.outcome = "credential_rejected"
            raise CredentialRejectedError(
                f"tool {tool.name}: {exc.request.method} {exc.request.url.path} answered HTTP 401; the service "
                "refused the tool's credential (check it: `botfactory secrets list`)"
            ) from None

    def _forget(self, call: GatewayCall, values: Mapping[str, str], audit: _AuditDraft) -> bool:
        """Forget credentials a service refused; whether a retry may get a different one."""
        if not isinstance(self.credentials, ForgetsCredentials):
            return False
        user_id = call.user.id if call.user is not None else None
        renewed = self.credentials.forget(tuple(call.tool.credentials), values, user_id=user_id)
        logger.info(
            "tool=<%s>, user_id=<%s>, retry=<%s> | the service refused the tool's credential; forgotten",
            call.tool.name,
            user_id,
            renewed,
        )
        return renewed

    def _audit(
        self,
        call: GatewayCall,
        arguments: dict[str, Any],
        draft: _AuditDraft,
        secrets: tuple[str, ...],
        elapsed_s: float,
    ) -> None:
        span = trace.get_current_span()
        span.set_attribute("botfactory.tool.outcome", draft.outcome)
        if self.metrics is not None:
            self.metrics.tool_call(tool=call.tool.name, outcome=draft.outcome, decision=draft.decision)
        if self.audit is None:
            return
        span_context = span.get_span_context()
        at = self._clock()
        reasons, approval, outcome, error = tuple(draft.reasons), draft.approval, draft.outcome, draft.error
        decision = draft.decision
        trace_id = format(span_context.trace_id, "032x") if span_context.is_valid else None

        def row() -> AuditRecord:  # made when the batch is written, off the call's path
            return AuditRecord(
                id=new_id(),
                at=at,
                principal=call.user.id if call.user is not None else None,
                bot=call.bot,
                agent_path=call.agent_path,
                tool=call.tool.name,
                arguments=redact(arguments, secrets),
                decision=decision,
                reasons=reasons,
                approval=approval,
                outcome=outcome,
                error=error,
                duration_ms=round(elapsed_s * 1000, 3),
                session_id=call.session.id,
                turn_id=call.turn_id,
                position=call.position,
                trace_id=trace_id,
            )

        self.audit.record_later(call.tool.name, row)


def _span_attributes(call: GatewayCall) -> dict[str, str]:
    attributes = {
        GEN_AI_CONVERSATION_ID: call.session.id,
        "botfactory.turn.id": call.turn_id,
        "botfactory.bot": call.bot,
        "gen_ai.tool.name": call.tool.name,
    }
    if call.user is not None:
        attributes["botfactory.user"] = call.user.id
    return attributes


def _policy_span(call: GatewayCall, audit: _AuditDraft, started_s: float) -> None:
    """The ``policy decision`` span: the Cedar decision (or the grant check) of one call and its reasons."""
    if not tracing_installed():
        return
    attributes: dict[str, Any] = {
        **_span_attributes(call),
        "botfactory.policy.decision": audit.decision,
        "botfactory.policy.reasons": list(audit.reasons),
    }
    record_span("gateway", "policy decision", start_s=started_s, end_s=time.time(), attributes=attributes)


def _approval_span(call: GatewayCall, request: ApprovalRecord, now: float) -> None:
    """The ``approval wait`` span: from the request for approval to its decision (or expiry)."""
    attributes: dict[str, Any] = {
        **_span_attributes(call),
        "botfactory.approval.id": request.id,
        "botfactory.approval.status": request.status,
    }
    if request.decided_by:
        attributes["botfactory.approval.decided_by"] = request.decided_by
    end = request.decided_at or min(now, request.expires_at)
    record_span("gateway", "approval wait", start_s=request.created_at, end_s=end, attributes=attributes)


@dataclass(kw_only=True)
class _AuditDraft:
    decision: str
    reasons: tuple[str, ...] = ()
    approval: str | None = None
    outcome: str = "ok"
    error: str | None = None


def _scrub(result: Any, secrets: tuple[str, ...]) -> Any:
    """The tool's result with any credential value it echoed replaced by ``***``."""
    if not secrets:
        return result
    if isinstance(result, str):
        return redact_text(result, secrets)
    text = json.dumps(result, default=str, ensure_ascii=False)
    if any(secret in text for secret in secrets):
        return redact_text(text, secrets)
    return result
