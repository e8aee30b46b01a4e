"""API keys for the HTTP API: stored as SHA-256 hashes, optionally scoped to one bot, revocable.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22

Append-only: once this file has landed, never edit it; write a new revision instead.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(64), nullable=False, comment="key_<random>: names the key in listings and revoke"),
        sa.Column("prefix", sa.String(16), nullable=False, comment="first characters of the secret, shown in listings"),
        sa.Column(
            "hash", sa.String(64), nullable=False, comment="SHA-256 hex of the secret; the secret is never stored"
        ),
        sa.Column("bot", sa.String(128), nullable=True, comment="the one bot the key may use; NULL: every bot"),
        sa.Column("name", sa.String(256), nullable=True, comment="what the key is for, as its creator wrote it"),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("last_used_at", sa.Float, nullable=True, comment="updated at most once a minute"),
        sa.Column("revoked_at", sa.Float, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
    )
    op.create_index("ix_api_keys_hash", "api_keys", ["hash"], unique=True)


def downgrade() -> None:
    op.drop_table("api_keys")
