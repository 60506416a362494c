"""The change feed: one event per create/update/delete, in commit-safe order.

Events are keyed by (txid, seq): the writing transaction's xid8 and a
sequence. Readers only return events whose txid is below the oldest
transaction still running (pg_snapshot_xmin), so an event can never appear
behind a cursor that a reader has already passed, whatever the commit order.
A statement-level trigger announces new events with NOTIFY toolreg_changes.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE tool_registration_events (
            txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
            seq bigint GENERATED ALWAYS AS IDENTITY,
            occurred_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT clock_timestamp(),
            kind VARCHAR(32) NOT NULL,
            tool_id VARCHAR(255) NOT NULL,
            registration_id UUID,
            registration JSONB,
            reason TEXT,
            PRIMARY KEY (txid, seq)
        )
        """
    )
    op.execute(
        "CREATE INDEX idx_tool_registration_events_occurred_at "
        "ON tool_registration_events (occurred_at)"
    )
    op.execute(
        """
        CREATE TABLE tool_registration_feed_state (
            id BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
            pruned_txid xid8 NOT NULL DEFAULT '0',
            pruned_seq BIGINT NOT NULL DEFAULT 0
        )
        """
    )
    op.execute("INSERT INTO tool_registration_feed_state DEFAULT VALUES")
    op.execute(
        """
        CREATE FUNCTION toolreg_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('toolreg_changes', '');
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER tool_registration_events_notify
        AFTER INSERT ON tool_registration_events
        FOR EACH STATEMENT EXECUTE FUNCTION toolreg_notify_change()
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS tool_registration_events")
    op.execute("DROP FUNCTION IF EXISTS toolreg_notify_change()")
    op.execute("DROP TABLE IF EXISTS tool_registration_feed_state")
