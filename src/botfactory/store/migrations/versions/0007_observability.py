"""Observability: the span store behind the console, alerts, and tools throttled by an alert.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

Append-only: once this file has landed, never edit it; write a new revision instead.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "spans",
        sa.Column("trace_id", sa.String(32), nullable=False, comment="W3C trace id, 32 hex digits"),
        sa.Column("span_id", sa.String(16), nullable=False, comment="16 hex digits"),
        sa.Column("parent_span_id", sa.String(16), nullable=True),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False, comment="internal | server | client | producer | consumer"),
        sa.Column("start_time", sa.Float, nullable=False),
        sa.Column("end_time", sa.Float, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, comment="unset | ok | error"),
        sa.Column("status_message", sa.Text, nullable=True),
        sa.Column("session_id", sa.String(256), nullable=True, comment="gen_ai.conversation.id"),
        sa.Column("turn_id", sa.String(36), nullable=True),
        sa.Column("bot", sa.String(128), nullable=True),
        sa.Column("attributes", sa.JSON, nullable=False, comment="redacted"),
        sa.Column("events", sa.JSON, nullable=True),
        sa.PrimaryKeyConstraint("trace_id", "span_id", name="pk_spans"),
    )
    op.create_index("ix_spans_session_id_start_time", "spans", ["session_id", "start_time"])
    op.create_index("ix_spans_turn_id", "spans", ["turn_id"])
    op.create_index("ix_spans_start_time", "spans", ["start_time"])
    op.create_table(
        "alerts",
        sa.Column("id", sa.String(36), nullable=False, comment="UUIDv7: time-ordered"),
        sa.Column("rule", sa.String(128), nullable=False, comment="the rule's name in settings"),
        sa.Column("kind", sa.String(32), nullable=False, comment="ttft | spend | tool_errors | safety"),
        sa.Column("subject", sa.String(256), nullable=False, comment="the bot, tool or session it is about"),
        sa.Column("severity", sa.String(16), nullable=False, comment="warning | critical"),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("data", sa.JSON, nullable=True, comment="the measured value, the threshold, ..."),
        sa.Column("status", sa.String(16), nullable=False, comment="open | resolved"),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("resolved_at", sa.Float, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
    )
    op.create_index("ix_alerts_status_created_at", "alerts", ["status", "created_at"])
    op.create_index("ix_alerts_rule_subject_status", "alerts", ["rule", "subject", "status"])
    op.create_table(
        "tool_throttles",
        sa.Column("tool", sa.String(256), nullable=False),
        sa.Column("until", sa.Float, nullable=False, comment="calls are refused until then"),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("tool", name="pk_tool_throttles"),
    )


def downgrade() -> None:
    op.drop_table("tool_throttles")
    op.drop_index("ix_alerts_rule_subject_status", "alerts")
    op.drop_index("ix_alerts_status_created_at", "alerts")
    op.drop_table("alerts")
    op.drop_index("ix_spans_start_time", "spans")
    op.drop_index("ix_spans_turn_id", "spans")
    op.drop_index("ix_spans_session_id_start_time", "spans")
    op.drop_table("spans")
