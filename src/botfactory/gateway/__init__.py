"""The tool gateway: every tool call is validated, authorized, approved, rate-limited, credentialed and audited.

:class:`Gateway` runs the chain (docs/gateway.md); :class:`PolicyEngine` decides with Cedar (docs/policies.md);
tools come from Python, agents, MCP servers (:class:`McpServer`), OpenAPI documents (:class:`OpenApiTools`) and
remote A2A agents (:class:`A2AAgents`).
"""

from __future__ import annotations

from botfactory.gateway._cedar_schema import ARGUMENT_TYPES, argument_types_from_json_schemas, schema_text
from botfactory.gateway.a2a_client import A2AAgents, A2AAgentTool
from botfactory.gateway.catalogue import CallContext, CredentialKind, CredentialRef, GatewayTool, SideEffect, ToolSource
from botfactory.gateway.gateway import ANONYMOUS, ApprovalRequests, CredentialProvider, Gateway, GatewayCall, Outcome
from botfactory.gateway.mcp_client import IDEMPOTENCY_META_KEY, McpServer, McpTool
from botfactory.gateway.openapi_tools import OpenApiOperation, OpenApiTools
from botfactory.gateway.policy import (
    GRANT_POLICY_ID,
    NOT_GRANTED_ID,
    Decision,
    PolicyEngine,
    PolicyMode,
    PolicyRequest,
    PolicySession,
    PolicyTool,
    PolicyUser,
)
from botfactory.gateway.rate_limit import (
    Bucket,
    MemoryRateLimiter,
    RateLimiter,
    RedisRateLimiter,
    StoreRateLimiter,
    buckets_for,
    rate_limiter_from_settings,
)

__all__ = [
    "ANONYMOUS",
    "ARGUMENT_TYPES",
    "GRANT_POLICY_ID",
    "IDEMPOTENCY_META_KEY",
    "NOT_GRANTED_ID",
    "A2AAgentTool",
    "A2AAgents",
    "ApprovalRequests",
    "Bucket",
    "CallContext",
    "CredentialKind",
    "CredentialProvider",
    "CredentialRef",
    "Decision",
    "Gateway",
    "GatewayCall",
    "GatewayTool",
    "McpServer",
    "McpTool",
    "MemoryRateLimiter",
    "OpenApiOperation",
    "OpenApiTools",
    "Outcome",
    "PolicyEngine",
    "PolicyMode",
    "PolicyRequest",
    "PolicySession",
    "PolicyTool",
    "PolicyUser",
    "RateLimiter",
    "RedisRateLimiter",
    "SideEffect",
    "StoreRateLimiter",
    "ToolSource",
    "argument_types_from_json_schemas",
    "buckets_for",
    "rate_limiter_from_settings",
    "schema_text",
]
