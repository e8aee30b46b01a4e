"""Initial schema: sessions, messages, turns, steps and the knowledge base tables.

Revision ID: 0001
Revises:
Create Date: 2025-11-21

Append-only: once this file has landed, never edit it; write a new revision instead.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(256), nullable=False, comment="deterministic session key from the channel"),
        sa.Column("bot", sa.String(128), nullable=False),
        sa.Column("user_id", sa.String(256), nullable=True),
        sa.Column("status", sa.String(32), nullable=False, server_default="active"),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_sessions"),
    )
    op.create_table(
        "messages",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("session_id", sa.String(256), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False, comment="arrival order within the session, from 1"),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("user_id", sa.String(256), nullable=True),
        sa.Column("turn_id", sa.String(36), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_messages"),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.id"], name="fk_messages_session_id_sessions", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("session_id", "seq", name="uq_messages_session_id_seq"),
    )
    op.create_table(
        "turns",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("session_id", sa.String(256), nullable=False),
        sa.Column("bot", sa.String(128), nullable=False),
        sa.Column("status", sa.String(32), nullable=False, comment="running | completed | failed"),
        sa.Column("input_message_id", sa.String(36), nullable=True),
        sa.Column("reply", sa.Text, nullable=True),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("error_message", sa.Text, nullable=True),
        sa.Column("input_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("output_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_turns"),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.id"], name="fk_turns_session_id_sessions", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_turns_session_id_started_at", "turns", ["session_id", "started_at"])
    op.create_table(
        "steps",
        sa.Column("turn_id", sa.String(36), nullable=False),
        sa.Column("position", sa.Integer, nullable=False, comment="stable order of the step within the turn"),
        sa.Column("agent_path", sa.String(512), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False, comment="model | tool"),
        sa.Column("name", sa.String(256), nullable=False, comment="model alias or tool name"),
        sa.Column("input", sa.JSON, nullable=True),
        sa.Column("output", sa.JSON, nullable=True),
        sa.Column("status", sa.String(16), nullable=False, comment="completed | failed"),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float, nullable=True),
        sa.PrimaryKeyConstraint("turn_id", "position", name="pk_steps"),
        sa.ForeignKeyConstraint(["turn_id"], ["turns.id"], name="fk_steps_turn_id_turns", ondelete="CASCADE"),
    )
    op.create_table(
        "kb_documents",
        sa.Column("id", sa.Integer, nullable=False, autoincrement=True),
        sa.Column("kb", sa.String(128), nullable=False, comment="knowledge base name"),
        sa.Column("source", sa.String(1024), nullable=False, comment="path of the source file as cited"),
        sa.Column("title", sa.String(512), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("ingested_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_kb_documents"),
        sa.UniqueConstraint("kb", "source", name="uq_kb_documents_kb_source"),
    )
    op.create_table(
        "kb_chunks",
        sa.Column("id", sa.Integer, nullable=False, autoincrement=True),
        sa.Column("document_id", sa.Integer, nullable=False),
        sa.Column("kb", sa.String(128), nullable=False),
        sa.Column("ordinal", sa.Integer, nullable=False),
        sa.Column("heading", sa.String(512), nullable=False, comment="document title and section heading"),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("embedding", sa.LargeBinary, nullable=False, comment="float32 little-endian, normalized"),
        sa.PrimaryKeyConstraint("id", name="pk_kb_chunks"),
        sa.ForeignKeyConstraint(
            ["document_id"], ["kb_documents.id"], name="fk_kb_chunks_document_id_kb_documents", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_kb_chunks_kb", "kb_chunks", ["kb"])
    op.create_index("ix_kb_chunks_document_id", "kb_chunks", ["document_id"])


def downgrade() -> None:
    op.drop_table("kb_chunks")
    op.drop_table("kb_documents")
    op.drop_table("steps")
    op.drop_table("turns")
    op.drop_table("messages")
    op.drop_table("sessions")
