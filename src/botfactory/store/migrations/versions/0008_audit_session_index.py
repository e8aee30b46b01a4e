"""The audit log indexed by session: a session page reads its tool calls without scanning the whole log.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08

Append-only: once this file has landed, never edit it; write a new revision instead.
"""

from __future__ import annotations

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index("ix_audit_log_session_id_at", "audit_log", ["session_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_session_id_at", "audit_log")
