"""API tokens (stored only as hashes) and tool ownership, beside the guide's table.

The guide's tool_registrations keeps its ten columns; who owns a tool lives in
tool_owners, removed with the tool. An owner is "token:<token id>" for a tool
registered over HTTP with a write token, or "source:<name>" for one fed by an
auto-discovery source.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE registry_tokens (
            id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
            name VARCHAR(100) NOT NULL,
            scope VARCHAR(16) NOT NULL CHECK (scope IN ('read', 'write', 'admin')),
            secret_hash BYTEA NOT NULL UNIQUE,
            created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
            last_used_at TIMESTAMP WITH TIME ZONE,
            revoked_at TIMESTAMP WITH TIME ZONE
        )
        """
    )
    op.execute(
        "CREATE UNIQUE INDEX idx_registry_tokens_active_name "
        "ON registry_tokens (name) WHERE revoked_at IS NULL"
    )
    op.execute(
        """
        CREATE TABLE tool_owners (
            tool_id VARCHAR(255) PRIMARY KEY
                REFERENCES tool_registrations (tool_id) ON DELETE CASCADE,
            owner VARCHAR(300) NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX idx_tool_owners_owner ON tool_owners (owner)")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS tool_owners")
    op.execute("DROP TABLE IF EXISTS registry_tokens")
