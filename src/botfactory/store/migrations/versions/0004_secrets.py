"""The secrets vault: values encrypted with AES-256-GCM under a master key that never reaches the database.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29

Append-only: once this file has landed, never edit it; write a new revision instead.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "secrets",
        sa.Column("owner", sa.String(256), nullable=False, comment="'' for platform-wide; else the owning principal"),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary, nullable=False, comment="AES-256-GCM of the value, tag included"),
        sa.Column("nonce", sa.LargeBinary, nullable=False, comment="96-bit GCM nonce, fresh for every write"),
        sa.Column("key_id", sa.String(64), nullable=False, comment="which master key encrypted it: SHA-256 hex prefix"),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("owner", "name", name="pk_secrets"),
    )


def downgrade() -> None:
    op.drop_table("secrets")
