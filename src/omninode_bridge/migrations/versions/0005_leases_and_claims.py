"""Liveness leadership as a lease; heartbeats that move backwards; claims of released ids.

``liveness_leases`` holds one row per leadership (``liveness``): the
generation (the fencing token every write of the leader carries, one more at
every takeover), who holds it and until when, judged on the database clock.
``holder_pid`` is the backend that also held the leader's advisory lock when
it took the lease (``NULL`` when it took it without): a lock holder may take
over from such a holder as soon as that backend no longer holds the lock.

``heartbeat_rewinds`` records when a tool's heartbeat last moved backwards, so
that the discovery index, which reads only heartbeats that moved forward
since its last look, also reads those.

``tool_id_releases`` remembers who held a tool_id when its registration was
deleted or reaped (``owner`` NULL: nobody in particular), so that an
auto-discovery source does not claim an id another owner held within the
retention without an admin's consent (``allowed_owner``: a source, or ``*``
for any); a claim held back is noted there (``claimed_by``, ``claim_seen_at``).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE liveness_leases (
            name VARCHAR(64) PRIMARY KEY,
            generation BIGINT NOT NULL CHECK (generation > 0),
            holder VARCHAR(255) NOT NULL,
            holder_pid INTEGER,
            acquired_at TIMESTAMP WITH TIME ZONE NOT NULL,
            renewed_at TIMESTAMP WITH TIME ZONE NOT NULL,
            expires_at TIMESTAMP WITH TIME ZONE NOT NULL
        )
        """
    )
    op.execute(
        """
        CREATE TABLE heartbeat_rewinds (
            tool_id VARCHAR(255) PRIMARY KEY
                REFERENCES tool_registrations (tool_id) ON DELETE CASCADE,
            rewound_at TIMESTAMP WITH TIME ZONE NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX idx_heartbeat_rewinds_rewound_at ON heartbeat_rewinds (rewound_at)")
    op.execute(
        """
        CREATE TABLE tool_id_releases (
            tool_id VARCHAR(255) PRIMARY KEY,
            owner VARCHAR(300),
            released_at TIMESTAMP WITH TIME ZONE NOT NULL,
            reason TEXT,
            allowed_owner VARCHAR(300),
            claimed_by VARCHAR(300),
            claim_seen_at TIMESTAMP WITH TIME ZONE
        )
        """
    )
    op.execute("CREATE INDEX idx_tool_id_releases_released_at ON tool_id_releases (released_at)")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS tool_id_releases")
    op.execute("DROP TABLE IF EXISTS heartbeat_rewinds")
    op.execute("DROP TABLE IF EXISTS liveness_leases")
