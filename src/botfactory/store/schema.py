"""The database schema, in one place. Migrations in ``migrations/versions`` must match it.

Times are UNIX epoch seconds (float) so that SQLite and PostgreSQL compare them the same way.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = [
    "kb_chunks",
    "kb_documents",
    "messages",
    "metadata",
    "sessions",
    "steps",
    "turns",
]

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id", sa.String(256), primary_key=True, comment="deterministic session key from the channel"),
    sa.Column("bot", sa.String(128), nullable=False),
    sa.Column("user_id", sa.String(256), nullable=True),
    sa.Column("status", sa.String(32), nullable=False, server_default="active"),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("session_id", sa.String(256), sa.ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False, comment="arrival order within the session, from 1"),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("user_id", sa.String(256), nullable=True),
    sa.Column("turn_id", sa.String(36), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.UniqueConstraint("session_id", "seq"),
)

turns = sa.Table(
    "turns",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("session_id", sa.String(256), sa.ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
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
    sa.Index(None, "session_id", "started_at"),
)

steps = sa.Table(
    "steps",
    metadata,
    sa.Column("turn_id", sa.String(36), sa.ForeignKey("turns.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True, comment="stable order of the step within the turn"),
    sa.Column("agent_path", sa.String(512), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False, comment="model | tool"),
    sa.Column("name", sa.String(256), nullable=False, comment="model alias or tool name"),
    sa.Column("input", sa.JSON, nullable=True),
    sa.Column("output", sa.JSON, nullable=True),
    sa.Column("status", sa.String(16), nullable=False, comment="completed | failed"),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float, nullable=True),
)

kb_documents = sa.Table(
    "kb_documents",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kb", sa.String(128), nullable=False, comment="knowledge base name"),
    sa.Column("source", sa.String(1024), nullable=False, comment="path of the source file as cited"),
    sa.Column("title", sa.String(512), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("ingested_at", sa.Float, nullable=False),
    sa.UniqueConstraint("kb", "source"),
)

kb_chunks = sa.Table(
    "kb_chunks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("document_id", sa.Integer, sa.ForeignKey("kb_documents.id", ondelete="CASCADE"), nullable=False),
    sa.Column("kb", sa.String(128), nullable=False),
    sa.Column("ordinal", sa.Integer, nullable=False),
    sa.Column("heading", sa.String(512), nullable=False, comment="document title and section heading"),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("embedding", sa.LargeBinary, nullable=False, comment="float32 little-endian, normalized"),
    sa.Index(None, "kb"),
    sa.Index(None, "document_id"),
)
