"""Audit rows for tests: one builder with plain defaults (an allowed, successful call of session ``s1``), so a
test names only the fields it is about."""

from __future__ import annotations

from typing import Any

from botfactory.store import AuditRecord, new_id


def make_audit_row(**changes: Any) -> AuditRecord:
    """An :class:`AuditRecord` with a fresh id and plain defaults, ``changes`` applied."""
    defaults: dict[str, Any] = {
        "id": new_id(),
        "at": 1.0,
        "principal": None,
        "bot": "support",
        "agent_path": "support",
        "tool": "search_docs",
        "arguments": {},
        "decision": "allow",
        "reasons": (),
        "approval": None,
        "outcome": "ok",
        "error": None,
        "duration_ms": 1.0,
        "session_id": "s1",
        "turn_id": "t1",
        "position": None,
        "trace_id": None,
    }
    return AuditRecord(**(defaults | changes))
