"""Liveness: the health state of every tool, shared by all replicas.

``tool_health`` holds, beside the guide's table, what the leader's passes
decided: the active-check status with its anti-flap counters, and whether
the heartbeat went stale. A tool without a row is unchecked and fresh until
a pass says otherwise; the row goes with the tool. Transitions themselves
are change-feed events (kinds critical, passing, stale, healthy), so the
history of a tool is read from ``tool_registration_events``, which gains an
index by tool for that.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE tool_health (
            tool_id VARCHAR(255) PRIMARY KEY
                REFERENCES tool_registrations (tool_id) ON DELETE CASCADE,
            check_status VARCHAR(16) NOT NULL DEFAULT 'unknown'
                CHECK (check_status IN ('passing', 'critical', 'unknown')),
            consecutive_failures INTEGER NOT NULL DEFAULT 0 CHECK (consecutive_failures >= 0),
            consecutive_successes INTEGER NOT NULL DEFAULT 0 CHECK (consecutive_successes >= 0),
            last_checked_at TIMESTAMP WITH TIME ZONE,
            last_latency_ms DOUBLE PRECISION,
            last_error TEXT,
            check_changed_at TIMESTAMP WITH TIME ZONE,
            check_generation BIGINT NOT NULL DEFAULT 0,
            heartbeat_status VARCHAR(16) NOT NULL DEFAULT 'healthy'
                CHECK (heartbeat_status IN ('healthy', 'stale')),
            heartbeat_changed_at TIMESTAMP WITH TIME ZONE
        )
        """
    )
    op.execute(
        "CREATE INDEX idx_tool_health_critical ON tool_health (tool_id) "
        "WHERE check_status = 'critical'"
    )
    op.execute(
        "CREATE INDEX idx_tool_registration_events_tool "
        "ON tool_registration_events (tool_id, occurred_at)"
    )


def downgrade() -> None:
    # Code of revision 0003 knows only created/updated/deleted events.
    op.execute(
        "DELETE FROM tool_registration_events "
        "WHERE kind IN ('critical', 'passing', 'stale', 'healthy')"
    )
    op.execute("DROP INDEX IF EXISTS idx_tool_registration_events_tool")
    op.execute("DROP TABLE IF EXISTS tool_health")
