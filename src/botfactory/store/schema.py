"""The database schema, in one place. Migrations in ``migrations/versions`` must match it.

Times are UNIX epoch seconds (float) so that SQLite and PostgreSQL compare them the same way.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = [
    "alerts",
    "api_keys",
    "approvals",
    "audit_log",
    "inbox",
    "kb_chunks",
    "kb_documents",
    "kill_switches",
    "messages",
    "metadata",
    "outbox",
    "rate_buckets",
    "secrets",
    "session_queue",
    "sessions",
    "spans",
    "steps",
    "tool_throttles",
    "turn_events",
    "turns",
    "usage_counters",
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
    sa.Column("last_seq", sa.Integer, nullable=False, server_default="0", comment="seq of the latest message"),
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
    # running | completed | failed | cancelled | interrupted | expired (the comment is from migration 0001)
    sa.Column("status", sa.String(32), nullable=False, comment="running | completed | failed"),
    sa.Column("input_message_id", sa.String(36), nullable=True),
    sa.Column("reply", sa.Text, nullable=True),
    sa.Column("error_code", sa.String(64), nullable=True),
    sa.Column("error_message", sa.Text, nullable=True),
    sa.Column("input_tokens", sa.Integer, nullable=False, server_default="0"),
    sa.Column("output_tokens", sa.Integer, nullable=False, server_default="0"),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0", comment="claims of this turn so far"),
    sa.Column("cost", sa.Float, nullable=False, server_default="0", comment="price of its model calls"),
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

# The durable runtime (migration 0002)

inbox = sa.Table(
    "inbox",
    metadata,
    sa.Column("message_id", sa.String(36), sa.ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("session_id", sa.String(256), sa.ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
    sa.Column("bot", sa.String(128), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False, comment="the message's seq: arrival order within the session"),
    sa.Column("dedup_key", sa.String(256), nullable=True, comment="a second enqueue with this key is the same message"),
    sa.Column("status", sa.String(16), nullable=False, comment="pending | running | done | dead | cancelled"),
    sa.Column("turn_id", sa.String(36), nullable=True, comment="the turn answering it, once claimed"),
    sa.Column("channel", sa.String(64), nullable=False, comment="where the reply goes: api, slack, ..."),
    sa.Column("reply_to", sa.JSON, nullable=True, comment="the channel's delivery target (thread, ...)"),
    sa.Column("trace_context", sa.JSON, nullable=True, comment="W3C trace context from the channel"),
    sa.Column("error", sa.Text, nullable=True, comment="why it went to the dead letters"),
    sa.Column("enqueued_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float, nullable=True),
    sa.UniqueConstraint("bot", "dedup_key"),
    sa.Index(None, "session_id", "seq"),
    sa.Index(None, "turn_id"),
    sa.Index(None, "status", "enqueued_at"),
)

session_queue = sa.Table(
    "session_queue",
    metadata,
    sa.Column("session_id", sa.String(256), sa.ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True),
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
    sa.Index(None, "ready_at"),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("turn_id", sa.String(36), sa.ForeignKey("turns.id", ondelete="CASCADE"), nullable=False, unique=True),
    sa.Column("session_id", sa.String(256), sa.ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
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
    sa.Index(None, "status", "next_attempt_at"),
    sa.Index(None, "session_id"),
)

turn_events = sa.Table(
    "turn_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("session_id", sa.String(256), nullable=False),
    sa.Column("turn_id", sa.String(36), nullable=True),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Index(None, "session_id", "id"),
    sa.Index(None, "created_at"),
)

kill_switches = sa.Table(
    "kill_switches",
    metadata,
    sa.Column("kind", sa.String(16), primary_key=True, comment="bot | agent | tool"),
    sa.Column("name", sa.String(256), primary_key=True),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
)

usage_counters = sa.Table(
    "usage_counters",
    metadata,
    sa.Column("scope", sa.String(16), primary_key=True, comment="bot | user | session"),
    sa.Column("key", sa.String(256), primary_key=True),
    sa.Column("day", sa.String(10), primary_key=True, comment="UTC date, or '' for a session's whole life"),
    sa.Column("tokens", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("cost", sa.Float, nullable=False, server_default="0"),
)

# Authentication (migration 0003)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True, comment="key_<random>: names the key in listings and revoke"),
    sa.Column("prefix", sa.String(16), nullable=False, comment="first characters of the secret, shown in listings"),
    sa.Column("hash", sa.String(64), nullable=False, comment="SHA-256 hex of the secret; the secret is never stored"),
    sa.Column("bot", sa.String(128), nullable=True, comment="the one bot the key may use; NULL: every bot"),
    sa.Column("name", sa.String(256), nullable=True, comment="what the key is for, as its creator wrote it"),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("last_used_at", sa.Float, nullable=True, comment="updated at most once a minute"),
    sa.Column("revoked_at", sa.Float, nullable=True),
    sa.Index(None, "hash", unique=True),
)

# The secrets vault (migration 0004)

secrets = sa.Table(
    "secrets",
    metadata,
    sa.Column("owner", sa.String(256), primary_key=True, comment="'' for platform-wide; else the owning principal"),
    sa.Column("name", sa.String(256), primary_key=True),
    sa.Column("ciphertext", sa.LargeBinary, nullable=False, comment="AES-256-GCM of the value, tag included"),
    sa.Column("nonce", sa.LargeBinary, nullable=False, comment="96-bit GCM nonce, fresh for every write"),
    sa.Column("key_id", sa.String(64), nullable=False, comment="which master key encrypted it: SHA-256 hex prefix"),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

# The tool gateway (migration 0005)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True, comment="UUIDv7: time-ordered"),
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
    sa.Index(None, "at"),
    sa.Index(None, "tool", "at"),
    sa.Index(None, "principal", "at"),
    sa.Index(None, "session_id", "at"),
)

rate_buckets = sa.Table(
    "rate_buckets",
    metadata,
    sa.Column("key", sa.String(512), primary_key=True, comment="e.g. tool:github.assign_copilot_seat"),
    sa.Column("tokens", sa.Float, nullable=False, comment="tokens left at updated_at"),
    sa.Column("updated_at", sa.Float, nullable=False),
)

# Approvals (migration 0006)

approvals = sa.Table(
    "approvals",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True, comment="UUIDv7"),
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
    sa.UniqueConstraint("call_key"),
    sa.Index(None, "status", "created_at"),
)

# Observability (migration 0007)

spans = sa.Table(
    "spans",
    metadata,
    sa.Column("trace_id", sa.String(32), primary_key=True, comment="W3C trace id, 32 hex digits"),
    sa.Column("span_id", sa.String(16), primary_key=True, comment="16 hex digits"),
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
    sa.Index(None, "session_id", "start_time"),
    sa.Index(None, "turn_id"),
    sa.Index(None, "start_time"),
)

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True, comment="UUIDv7: time-ordered"),
    sa.Column("rule", sa.String(128), nullable=False, comment="the rule's name in settings"),
    sa.Column("kind", sa.String(32), nullable=False, comment="ttft | spend | tool_errors | safety"),
    sa.Column("subject", sa.String(256), nullable=False, comment="the bot, tool or session it is about"),
    sa.Column("severity", sa.String(16), nullable=False, comment="warning | critical"),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("data", sa.JSON, nullable=True, comment="the measured value, the threshold, ..."),
    sa.Column("status", sa.String(16), nullable=False, comment="open | resolved"),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("resolved_at", sa.Float, nullable=True),
    sa.Index(None, "status", "created_at"),
    sa.Index(None, "rule", "subject", "status"),
)

tool_throttles = sa.Table(
    "tool_throttles",
    metadata,
    sa.Column("tool", sa.String(256), primary_key=True),
    sa.Column("until", sa.Float, nullable=False, comment="calls are refused until then"),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)
