"""The usage guide's tool_registrations table and its six indexes.

One deliberate difference from the guide: the id default is the built-in
gen_random_uuid() (same v4 UUIDs), since uuid-ossp is missing from the
embedded build.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE tool_registrations (
            id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
            tool_id VARCHAR(255) UNIQUE NOT NULL,
            node_type VARCHAR(50) NOT NULL
                CHECK (node_type IN ('effect', 'compute', 'reducer', 'orchestrator')),
            capabilities JSONB DEFAULT '{}',
            endpoints JSONB DEFAULT '{}',
            metadata JSONB DEFAULT '{}',
            health_endpoint VARCHAR(500),
            last_heartbeat TIMESTAMP WITH TIME ZONE,
            registered_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
            updated_at TIMESTAMP WITH TIME ZONE DEFAULT NOW()
        )
        """
    )
    op.execute("CREATE INDEX idx_tool_registrations_tool_id ON tool_registrations(tool_id)")
    op.execute("CREATE INDEX idx_tool_registrations_node_type ON tool_registrations(node_type)")
    op.execute(
        "CREATE INDEX idx_tool_registrations_last_heartbeat "
        "ON tool_registrations(last_heartbeat DESC)"
    )
    for column in ("capabilities", "endpoints", "metadata"):
        op.execute(
            f"CREATE INDEX idx_tool_registrations_{column}_gin "
            f"ON tool_registrations USING GIN({column})"
        )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS tool_registrations")
