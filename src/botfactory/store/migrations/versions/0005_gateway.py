"""The tool gateway: the audit log of tool calls and the token buckets of rate limits.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22

Append-only: once this file has landed, never edit it; write a new revision instead.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.String(36), nullable=False, comment="UUIDv7: time-ordered"),
        sa.Column("at", sa.Float, nullable=False, comment="when the call was decided"),
        sa.Column("principal", sa.String(256), nullable=True, comment="the user the call was made for"),
        sa.Column("bot", sa.String(128), nullable=False),
        sa.Column("agent_path", sa.String(512), nullable=False),
        sa.Column("tool", sa.String(256), nullable=False),
        sa.Column("arguments", sa.JSON, nullable=False, comment="redacted: secrets and sensitive keys masked"),
        sa.Column("decision", sa.String(32), nullable=False, comment="allow | deny | would-deny | invalid"),
        sa.Column("reasons", sa.JSON, nullable=False, comment="policy ids that determined the decision"),
        sa.Column("approval", sa.String(32), nullable=True, comment="approved | denied | expired, when asked"),
        sa.Column("outcome", sa.String(32), nullable=False, comment="ok | error | denied | rejected | ..."),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("duration_ms", sa.Float, nullable=False),
        sa.Column("session_id", sa.String(256), nullable=True),
        sa.Column("turn_id", sa.String(36), nullable=True),
        sa.Column("position", sa.Integer, nullable=True),
        sa.Column("trace_id", sa.String(32), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_tool_at", "audit_log", ["tool", "at"])
    op.create_index("ix_audit_log_principal_at", "audit_log", ["principal", "at"])
    op.create_table(
        "rate_buckets",
        sa.Column("key", sa.String(512), nullable=False, comment="e.g. tool:github.assign_copilot_seat"),
        sa.Column("tokens", sa.Float, nullable=False, comment="tokens left at updated_at"),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_rate_buckets"),
    )


def downgrade() -> None:
    op.drop_table("rate_buckets")
    op.drop_index("ix_audit_log_principal_at", "audit_log")
    op.drop_index("ix_audit_log_tool_at", "audit_log")
    op.drop_index("ix_audit_log_at", "audit_log")
    op.drop_table("audit_log")
