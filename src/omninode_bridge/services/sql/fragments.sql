-- SQL that several queries share, included with {{ name(args) }} (see __init__.py).

-- fragment: fence(generation, lease)
-- The fence of a leader's write (liveness.sql): one row while the lease {lease}
-- is held at {generation} (locked FOR SHARE until the statement's transaction
-- ends, so that no takeover commits in between), or always when {generation}
-- is NULL (an unfenced one-off pass); no row otherwise.
SELECT WHERE {generation}::bigint IS NULL OR EXISTS (
    SELECT FROM liveness_leases l
    WHERE l.name = {lease}::varchar AND l.generation = {generation}::bigint
      AND l.expires_at > clock_timestamp()
    FOR SHARE)

-- fragment: record_created(owner)
-- The CTEs ev and own after a CTE ins of newly inserted registrations: a
-- 'created' change-feed event for each, and {owner} as its owner (none when
-- {owner} is NULL).
ev AS (
    INSERT INTO tool_registration_events (kind, tool_id, registration_id, registration)
    SELECT 'created', ins.tool_id, ins.id, to_jsonb(ins) FROM ins
), own AS (
    INSERT INTO tool_owners (tool_id, owner)
    SELECT ins.tool_id, {owner}::varchar FROM ins WHERE {owner}::varchar IS NOT NULL
)
