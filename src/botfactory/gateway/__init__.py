"""The tool gateway: every tool call is validated, authorized, approved, rate-limited, credentialed and audited.

So far: Cedar authorization of tool calls (``PolicyEngine``); see docs/policies.md.
"""

from __future__ import annotations

from botfactory.gateway._cedar_schema import ARGUMENT_TYPES, argument_types_from_json_schemas, schema_text
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

__all__ = [
    "ARGUMENT_TYPES",
    "GRANT_POLICY_ID",
    "NOT_GRANTED_ID",
    "Decision",
    "PolicyEngine",
    "PolicyMode",
    "PolicyRequest",
    "PolicySession",
    "PolicyTool",
    "PolicyUser",
    "argument_types_from_json_schemas",
    "schema_text",
]
