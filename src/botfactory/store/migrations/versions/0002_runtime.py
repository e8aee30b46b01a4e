"""The durable runtime: inbox, session queue with leases, outbox, turn events, kill switches, usage counters.

Also adds ``attempts`` and ``cost`` to ``turns``, and ``last_seq`` to ``sessions`` (the next message's ``seq`` is
taken by incrementing it, one statement that also locks the session row).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

Append-only: once this file has landed, never edit it; write a new revision instead.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # ADD COLUMN with a constant default needs no table rebuild on SQLite.
    op.add_column(
        "sessions",
        sa.Column("last_seq", sa.Integer, nullable=False, server_default="0", comment="seq of the latest message"),
    )
    op.execute(
        "UPDATE sessions SET last_seq = (SELECT coalesce(max(seq), 0) FROM messages WHERE messages.session_id = sessions.id)"
    )
    op.add_column(
        "turns",
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0", comment="claims of this turn so far"),
    )
    op.add_column(
        "turns",
        sa.Column("cost", sa.Float, nullable=False, server_default="0", comment="price of its model calls"),
    )
    op.create_table(
        "inbox",
        sa.Column("message_id", sa.String(36), nullable=False),
        sa.Column("session_id", sa.String(256), nullable=False),
        sa.Column("bot", sa.String(128), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False, comment="the message's seq: arrival order within the session"),
        sa.Column(
            "dedup_key", sa.String(256), nullable=True, comment="a second enqueue with this key is the same message"
        ),
        sa.Column("status", sa.String(16), nullable=False, comment="pending | running | done | dead | cancelled"),
        sa.Column("turn_id", sa.String(36), nullable=True, comment="the turn answering it, once claimed"),
        sa.Column("channel", sa.String(64), nullable=False, comment="where the reply goes: api, slack, ..."),
        sa.Column("reply_to", sa.JSON, nullable=True, comment="the channel's delivery target (thread, ...)"),
        sa.Column("trace_context", sa.JSON, nullable=True, comment="W3C trace context from the channel"),
        sa.Column("error", sa.Text, nullable=True, comment="why it went to the dead letters"),
        sa.Column("enqueued_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float, nullable=True),
        sa.PrimaryKeyConstraint("message_id", name="pk_inbox"),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name="fk_inbox_message_id_messages", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.id"], name="fk_inbox_session_id_sessions", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("bot", "dedup_key", name="uq_inbox_bot_dedup_key"),
    )
    op.create_index("ix_inbox_session_id_seq", "inbox", ["session_id", "seq"])
    op.create_index("ix_inbox_turn_id", "inbox", ["turn_id"])
    op.create_index("ix_inbox_status_enqueued_at", "inbox", ["status", "enqueued_at"])
    op.create_table(
        "session_queue",
        sa.Column("session_id", sa.String(256), nullable=False),
        sa.Column("bot", sa.String(128), nullable=False),
        sa.Column("pending", sa.Integer, nullable=False, comment="messages not yet answered (pending or running)"),
        sa.Column(
            "ready_at",
            sa.Float,
            nullable=True,
            comment="when a worker may claim the session: NULL without work; while leased, the lease's expiry",
        ),
        sa.Column("lease_token", sa.String(36), nullable=True, comment="the current claim; fences stale workers"),
        sa.Column("turn_id", sa.String(36), nullable=True, comment="the unfinished turn, resumed by the next claim"),
        sa.Column("cancel", sa.String(16), nullable=True, comment="cancel | interrupt, requested of the running turn"),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("session_id", name="pk_session_queue"),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.id"], name="fk_session_queue_session_id_sessions", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_session_queue_ready_at", "session_queue", ["ready_at"])
    op.create_table(
        "outbox",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("turn_id", sa.String(36), nullable=False),
        sa.Column("session_id", sa.String(256), nullable=False),
        sa.Column("bot", sa.String(128), nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("reply_to", sa.JSON, nullable=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, comment="pending | delivered | stale | failed"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.Float, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("delivered_at", sa.Float, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        sa.ForeignKeyConstraint(["turn_id"], ["turns.id"], name="fk_outbox_turn_id_turns", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.id"], name="fk_outbox_session_id_sessions", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("turn_id", name="uq_outbox_turn_id"),
    )
    op.create_index("ix_outbox_status_next_attempt_at", "outbox", ["status", "next_attempt_at"])
    op.create_index("ix_outbox_session_id", "outbox", ["session_id"])
    op.create_table(
        "turn_events",
        sa.Column("id", sa.Integer, nullable=False, autoincrement=True),
        sa.Column("session_id", sa.String(256), nullable=False),
        sa.Column("turn_id", sa.String(36), nullable=True),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_turn_events"),
    )
    op.create_index("ix_turn_events_session_id_id", "turn_events", ["session_id", "id"])
    op.create_index("ix_turn_events_created_at", "turn_events", ["created_at"])
    op.create_table(
        "kill_switches",
        sa.Column("kind", sa.String(16), nullable=False, comment="bot | agent | tool"),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("kind", "name", name="pk_kill_switches"),
    )
    op.create_table(
        "usage_counters",
        sa.Column("scope", sa.String(16), nullable=False, comment="bot | user | session"),
        sa.Column("key", sa.String(256), nullable=False),
        sa.Column("day", sa.String(10), nullable=False, comment="UTC date, or '' for a session's whole life"),
        sa.Column("tokens", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("cost", sa.Float, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("scope", "key", "day", name="pk_usage_counters"),
    )


def downgrade() -> None:
    for table in ("usage_counters", "kill_switches", "turn_events", "outbox", "session_queue", "inbox"):
        op.drop_table(table)
    with op.batch_alter_table("turns") as batch:
        batch.drop_column("cost")
        batch.drop_column("attempts")
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("last_seq")
