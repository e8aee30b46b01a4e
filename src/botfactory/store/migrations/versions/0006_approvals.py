"""Approvals: a person's yes or no on a tool call, while the turn waits without holding a worker.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22

Append-only: once this file has landed, never edit it; write a new revision instead.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "approvals",
        sa.Column("id", sa.String(36), nullable=False, comment="UUIDv7"),
        sa.Column("call_key", sa.String(300), nullable=False, comment="the call's idempotency key: turn:position"),
        sa.Column("session_id", sa.String(256), nullable=False),
        sa.Column("turn_id", sa.String(36), nullable=False),
        sa.Column("bot", sa.String(128), nullable=False),
        sa.Column("agent_path", sa.String(512), nullable=False),
        sa.Column("tool", sa.String(256), nullable=False),
        sa.Column("arguments", sa.JSON, nullable=False, comment="redacted, for the approver to read"),
        sa.Column("requester", sa.String(256), nullable=True, comment="the user the call is made for"),
        sa.Column("status", sa.String(16), nullable=False, comment="pending | approved | denied | expired"),
        sa.Column("decided_by", sa.String(256), nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("notice", sa.JSON, nullable=True, comment="where the request was posted (e.g. Slack channel, ts)"),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("decided_at", sa.Float, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_approvals"),
        sa.UniqueConstraint("call_key", name="uq_approvals_call_key"),
    )
    op.create_index("ix_approvals_status_created_at", "approvals", ["status", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_approvals_status_created_at", "approvals")
    op.drop_table("approvals")
