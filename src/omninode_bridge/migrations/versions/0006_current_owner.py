"""``tool_owner_now(tool_id)``: a tool's owner as last committed, for owner-checked upserts.

A replace (``PUT``) is an ``INSERT ... ON CONFLICT DO UPDATE`` whose ``WHERE``
checks the owner. The conflicting row it locks is the latest committed one,
even when it was created after the statement began; a subquery on
``tool_owners`` in that ``WHERE`` reads the statement's snapshot, which does
not hold the owner row created with it. Two requests of one token racing on
one id were refused as not owning their own tool. A ``VOLATILE`` function
takes a fresh snapshot for each query it runs, so the check reads the owner
committed with the row it locked (the owner row changes only together with
the registration row, which the upsert holds locked).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION tool_owner_now(p_tool_id VARCHAR) RETURNS VARCHAR
        LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE AS $$
        BEGIN
            RETURN (SELECT owner FROM tool_owners WHERE tool_id = p_tool_id);
        END
        $$
        """
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS tool_owner_now(VARCHAR)")
